import torch
from torch import nn

def down(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1), nn.InstanceNorm2d(cout, affine=True), nn.LeakyReLU(0.2))

def up(cin, cout):
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.InstanceNorm2d(cout, affine=True),
                         nn.LeakyReLU(0.2))

class AE(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(down(3, 16), down(16, 32), down(32, 64))
        self.dec = nn.Sequential(up(64, 32), up(32, 16), nn.ConvTranspose2d(16, 3, 4, 2, 1), nn.Tanh())
    def forward(self, img):
        return self.dec(self.enc(img))

def build():
    torch.manual_seed(0)
    m = AE().eval()
    for mod in m.modules():
        if isinstance(mod, nn.InstanceNorm2d):
            mod.weight.data.uniform_(0.5, 1.5); mod.bias.data.uniform_(-0.2, 0.2)
    return m, (torch.randn(1, 3, 64, 64),)
