from edgeship.cli import main

main()
