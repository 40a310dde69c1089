"""plan -> run (shards) -> merge on a real project: the digits CNN to .tflite fp32/int8 and .onnx int8,
validated on the host. Three shards run in three processes, each in its own working folder, into one
results store; merge must judge as `edgeship check` judges the same config (the same gates, statuses
and exit code). Running a shard again does no work; two runs racing over one store run each job
once (the journal says who ran what); a tool version change makes new keys; a device lease shuts
out a second holder (a lock file here, a lock directory over real ssh).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from device_support import SSHTestServer, emu_rootfs  # noqa: F401  (fixture)

from edgeship.cli import cli
from edgeship.config import load_config
from edgeship.jobs import leases
from edgeship.jobs.emit import github_matrix, k8s_indexed_job
from edgeship.jobs.plan import load_plan, make_plan, shard_jobs
from edgeship.jobs.store import Store

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TARGETS = ["tflite:fp32", "tflite:int8", "onnx:int8"]  # three exports: one per shard


def project(folder: Path, source: str) -> Path:
    items = ", ".join(f'{{ format = "{t.split(":")[0]}", recipe = "{t.split(":")[1]}" }}' for t in TARGETS)
    cfg = folder / "edgeship.toml"
    cfg.write_text(f'out = "bundle"\ntargets = [{items}]\ndevices = ["local"]\n\n[model]\nsource = "{source}"\n'
                   'name = "digits"\n\n[data]\ncalib = "digits:train"\neval = "digits:test"\ngolden_samples = 200\n\n'
                   "[measure]\nwarmup = 2\nruns = 10\n\n[gates.accuracy]\nmin_top1 = 90.0\n\n[gates.size]\nmax_kb = 256\n")
    return cfg


def cli_run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def edgeship_process(*args, cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgeship", "-q", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def gates(report_dir: Path) -> set[tuple]:
    data = json.loads((report_dir / "report.json").read_text())
    return {(g["gate"], g["target"], g["device"], g["status"]) for g in data["gates"]}


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, torch_digits_pt2):
    """The project planned, run as 3 shards (3 processes, 3 working folders, one store) while check
    runs the same config here, then merged."""
    root = tmp_path_factory.mktemp("jobs")
    cfg = project(root, torch_digits_pt2.source)
    plan, store = root / "plan.json", root / "store"
    r = cli_run("plan", cfg, "--out", plan)
    assert r.exit_code == 0, r.output
    env = {**os.environ, "EDGESHIP_LEASE_DIR": str(root / "leases")}
    procs = []
    for i in (1, 2, 3):
        (root / f"work{i}").mkdir()
        procs.append(edgeship_process("run", "--plan", plan, "--results", store, "--shard", f"{i}/3",
                                      cwd=root / f"work{i}", env=env))
    check = cli_run("check", cfg, "--report-dir", root / "check-report")  # meanwhile, the same config whole
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(outs)[-4000:]
    merge = cli_run("merge", store, "--plan", plan, "--report-dir", root / "merge-report")
    return {"root": root, "cfg": cfg, "plan": plan, "store": store, "check": check, "merge": merge, "env": env}


def test_three_shards_merged_judge_as_check_does(sharded):
    check, merge, root = sharded["check"], sharded["merge"], sharded["root"]
    assert check.exit_code == 0, check.output[-3000:]
    assert merge.exit_code == check.exit_code, merge.output[-3000:]
    assert gates(root / "merge-report") == gates(root / "check-report")
    assert {g[0] for g in gates(root / "merge-report")} >= {"accuracy.top1_drop", "accuracy.min_top1", "size"}
    for name in ("report.json", "junit.xml", "report.md", "report.html"):
        assert (root / "merge-report" / name).stat().st_size > 0
    merged = json.loads((root / "merge-report" / "report.json").read_text())
    checked = json.loads((root / "check-report" / "report.json").read_text())
    assert sorted(r["target"] for r in merged["results"]) == sorted(TARGETS)
    # the same artifacts, measured on the same golden vectors: the same accuracy vs the labels
    acc = {r["target"]: r["accuracy"]["accuracy"] for r in checked["results"]}
    assert {r["target"]: r["accuracy"]["accuracy"] for r in merged["results"]} == acc
    # each job ran once, by one of the three processes; the working folders stay empty
    plan = load_plan(sharded["plan"])
    ran = [e["key"] for e in Store(sharded["store"]).journal_entries() if e["event"] == "ran"]
    assert sorted(ran) == sorted(j["key"] for j in plan["jobs"])
    for i in (1, 2, 3):
        assert not any((root / f"work{i}").iterdir())


def test_running_a_shard_again_does_no_work(sharded):
    store = Store(sharded["store"])
    before = (len(store.journal_entries()), {f: f.stat().st_mtime_ns for f in sharded["store"].glob("*/result.json")})
    r = cli_run("run", "--plan", sharded["plan"], "--results", sharded["store"], "--shard", "2/3")
    assert r.exit_code == 0, r.output
    assert "shard 2/3: 0 ran, 2 already in the store" in r.output
    key = next(j["key"] for j in load_plan(sharded["plan"])["jobs"] if j["kind"] == "validate")
    r = cli_run("run", "--plan", sharded["plan"], "--results", sharded["store"], "--job", key[:16])
    assert r.exit_code == 0 and f"job {key[:12]}: 0 ran, 1 already in the store" in r.output, r.output
    after = (len(store.journal_entries()), {f: f.stat().st_mtime_ns for f in sharded["store"].glob("*/result.json")})
    assert after == before


def test_two_runs_racing_run_each_job_once(sharded, tmp_path):
    """A second store holding only the exports; two processes run the whole plan into it at once."""
    plan = load_plan(sharded["plan"])
    race = tmp_path / "race"
    for j in plan["jobs"]:
        if j["kind"] == "export":
            shutil.copytree(sharded["store"] / j["key"], race / j["key"])
    procs = [edgeship_process("run", "--plan", sharded["plan"], "--results", race, cwd=tmp_path, env=sharded["env"])
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outs)
    entries = Store(race).journal_entries()
    validations = sorted(j["key"] for j in plan["jobs"] if j["kind"] == "validate")
    assert sorted(e["key"] for e in entries if e["event"] == "ran") == validations
    assert not [e for e in entries if e["event"] == "dropped"]
    r = cli_run("merge", race, "--plan", sharded["plan"], "--report-dir", tmp_path / "report")
    assert r.exit_code == 0 and gates(tmp_path / "report") == gates(sharded["root"] / "check-report"), r.output


def test_a_tool_version_change_makes_new_keys_and_is_never_reused(sharded, tmp_path):
    cfg = load_config(sharded["cfg"])
    plan = load_plan(sharded["plan"])
    assert [j["key"] for j in make_plan(cfg, plan["versions"])["jobs"]] == [j["key"] for j in plan["jobs"]]
    upgraded = make_plan(cfg, {**plan["versions"], "torch": "9.9.9"})
    assert not {j["key"] for j in upgraded["jobs"]} & {j["key"] for j in plan["jobs"]}
    # a plan made with other tools is refused here: its keys would not describe what this machine makes
    other = tmp_path / "plan.json"
    other.write_text(json.dumps(upgraded))
    r = cli_run("run", "--plan", other, "--results", tmp_path / "s", "--shard", "1/1")
    assert r.exit_code == 2 and "torch 9.9.9 in the plan" in r.output and "Traceback" not in r.output, r.output
    # --against: a store "from before an upgrade" (the same results, torch said to be older, top-1 lower)
    old = tmp_path / "old"
    shutil.copytree(sharded["store"], old)
    for f in old.glob("*/result.json"):
        res = json.loads(f.read_text())
        res["versions"]["torch"] = "2.0.0"
        for rec in res.get("records") or []:
            rec["accuracy"]["accuracy"] -= 5.0
        f.write_text(json.dumps(res))
    r = cli_run("merge", sharded["store"], "--plan", sharded["plan"], "--report-dir", tmp_path / "r", "--against", old)
    assert r.exit_code == 0, r.output
    changes = json.loads((tmp_path / "r" / "toolchain.json").read_text())
    assert {row["target"] for row in changes["rows"]} == set(TARGETS)
    for row in changes["rows"]:
        assert row["versions"] == {"torch": ["2.0.0", plan["versions"]["torch"]]}
        assert row["figures"]["top1"]["change"] == pytest.approx(5.0)
    assert "torch 2.0.0 → " in (tmp_path / "r" / "toolchain.md").read_text()
    # a result that claims other tool versions than its plan's is not merged
    r = cli_run("merge", old, "--plan", sharded["plan"], "--report-dir", tmp_path / "r2")
    assert r.exit_code == 2 and "other tool versions" in r.output, r.output


def test_bad_input_is_one_line_and_exit_2(sharded, tmp_path):
    plan, store = sharded["plan"], sharded["store"]
    for args, words in [
        (["run", "--plan", plan, "--results", store, "--shard", "3/2"], "bad shard '3/2'"),
        (["run", "--plan", plan, "--results", store, "--shard", "x"], "expected I/N"),
        (["run", "--plan", tmp_path / "none.json", "--results", store], "plan not found"),
        (["run", "--plan", plan, "--results", plan, "--shard", "1/3"], "is not writable"),
        (["merge", tmp_path / "empty", "--plan", plan], "no results store"),
        (["run", "--plan", plan, "--results", store, "--shard", "1/3", "--jobs", "2"], "without --shard"),
        (["run", "--plan", plan, "--results", store, "--job", "nosuchkey"], "no job 'nosuchkey'"),
    ]:
        r = cli_run(*args)
        assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output, (args, r.output)
    (tmp_path / "partial").mkdir()
    r = cli_run("merge", tmp_path / "partial", "--plan", plan)
    assert r.exit_code == 2 and "3 of 3 validation jobs have no result" in r.output, r.output


def test_emitted_matrix_and_indexed_job_validate(sharded, tmp_path):
    plan = load_plan(sharded["plan"])
    matrix = json.loads(github_matrix(plan, 3))
    assert [m["shard"] for m in matrix["include"]] == ["1/3", "2/3", "3/3"]
    assert sum(m["jobs"] for m in matrix["include"]) == len(plan["jobs"])
    assert [len(shard_jobs(plan, i, 3)) for i in (1, 2, 3)] == [2, 2, 2]
    manifest = tmp_path / "job.yaml"
    manifest.write_text(k8s_indexed_job(plan, 3, image="edgeship:test", config="edgeship.toml",
                                        results_claim="results", plan_json=sharded["plan"].read_text()))
    import kubernetes_validate as kv  # the test extra's validator (pyproject.toml): required, never skipped
    import yaml

    docs = list(yaml.safe_load_all(manifest.read_text()))
    assert json.loads(docs[0]["data"]["plan.json"]) == plan
    assert docs[1]["spec"]["completionMode"] == "Indexed" and docs[1]["spec"]["completions"] == 3
    for doc in docs:
        kv.validate(doc, "1.30.0", strict=True)
    docs[1]["spec"]["completions"] = "three"
    with pytest.raises(kv.ValidationError):
        kv.validate(docs[1], "1.30.0", strict=True)
    for example in (REPO / "examples" / "k8s-indexed-job.yaml",):
        for doc in yaml.safe_load_all(example.read_text()):
            kv.validate(doc, "1.30.0", strict=True)
    checker = Path(sys.executable).with_name("check-jsonschema")  # the test extra's; GitHub's workflow schema,
    for workflow in ("github-actions-sharded.yml", "github-actions.yml"):  # vendored by it (no network)
        p = subprocess.run([checker, "--builtin-schema", "vendor.github-workflows", REPO / "examples" / workflow],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr


def test_a_lease_shuts_out_a_second_holder(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESHIP_LEASE_DIR", str(tmp_path))
    with leases.lease("local", wait_s=0):
        with pytest.raises(leases.LeaseBusy, match="leased to"):
            with leases.lease("local", wait_s=0):
                pass
        with leases.lease("emu:rpi4", wait_s=0):  # another device: its own lease
            pass
        # another process is shut out too (flock: released when its holder exits, whatever the exit)
        probe = ("from edgeship.jobs import leases\ntry:\n    with leases.lease('local', wait_s=0): print('GOT')\n"
                 "except leases.LeaseBusy: print('BUSY')\n")
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout
        assert out.strip() == "BUSY"
    with leases.lease("local", wait_s=0):
        pass


def test_an_ssh_lease_is_a_lock_directory_on_the_board(emu_rootfs, tmp_path_factory):
    """Over real ssh (an sshd on loopback, sessions in the arm64 root filesystem): mkdir is the lock."""
    from edgeship.runtime.ssh import SSHDevice

    server = SSHTestServer(emu_rootfs, tmp_path_factory.mktemp("sshd-lease"))
    server.start()
    old = os.environ.get("EDGESHIP_SSH_CONFIG")
    os.environ["EDGESHIP_SSH_CONFIG"] = str(server.client_config("lease"))
    try:
        first, second = SSHDevice(server.uri), SSHDevice(server.uri)
        shutil.rmtree(emu_rootfs / "tmp" / "edgeship-device-lease", ignore_errors=True)
        with leases.lease(server.uri, first, wait_s=0):
            assert (emu_rootfs / "tmp" / "edgeship-device-lease" / "owner").is_file()
            with pytest.raises(leases.LeaseBusy):
                with leases.lease(server.uri, second, wait_s=0):
                    pass
        assert not (emu_rootfs / "tmp" / "edgeship-device-lease").exists()
        with leases.lease(server.uri, second, wait_s=0):
            pass
        # a holder that died holding it: its owner file went silent for longer than the ttl, so it is broken
        lock = emu_rootfs / "tmp" / "edgeship-device-lease"
        lock.mkdir()
        (lock / "owner").write_text("deadhost:1\n")
        os.utime(lock / "owner", (time.time() - 1000, time.time() - 1000))
        with leases.lease(server.uri, first, wait_s=10):
            assert (lock / "owner").read_text().split(":")[0] != "deadhost"
        assert not lock.exists()
    finally:
        if old is None:
            os.environ.pop("EDGESHIP_SSH_CONFIG", None)
        else:
            os.environ["EDGESHIP_SSH_CONFIG"] = old
        server.stop()
