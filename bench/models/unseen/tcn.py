import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

class TCN(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            weight_norm(nn.Conv1d(1, 16, 9, stride=4, padding=4)), nn.PReLU(16),
            weight_norm(nn.Conv1d(16, 32, 3, stride=1, dilation=2, padding=2)), nn.PReLU(32),
            weight_norm(nn.Conv1d(32, 32, 3, stride=2, dilation=4, padding=4)), nn.PReLU(32),
            weight_norm(nn.Conv1d(32, 64, 3, stride=2, dilation=8, padding=8)), nn.PReLU(64),
            nn.AdaptiveAvgPool1d(1))
        self.fc = nn.Linear(64, 10)
    def forward(self, wav):
        return self.fc(self.net(wav).flatten(1))

def build():
    torch.manual_seed(0)
    return TCN().eval(), (torch.randn(1, 1, 4000) * 0.1,)
