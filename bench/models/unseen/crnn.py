import torch
from torch import nn

class CRNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d((2, 1)),
                                  nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d((2, 1)))
        self.gru = nn.GRU(32 * 10, 64, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(128, 12)
    def forward(self, spec):
        x = self.conv(spec)                     # (1, 32, 10, 100)
        b, c, f, t = x.shape
        x = x.permute(0, 3, 1, 2).reshape(b, t, c * f)
        y, _ = self.gru(x)
        return self.fc(y)

def build():
    torch.manual_seed(0)
    m = CRNN().eval()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2); mod.running_var.uniform_(0.5, 2)
    return m, (torch.randn(1, 1, 40, 100),)
