"""A weight-free generator with a natural-image prior: a 1/f-scaled Fourier code.

Natural images have amplitude spectra falling roughly as 1/f and strongly correlated colour
channels. Writing the code in a space where both are whitened, i.e. Fourier coefficients
scaled by 1/f and colours decorrelated, makes i.i.d. N(0, 1) codes look like smooth,
photograph-like textures. (A few directions are redundant: the real FFT's self-conjugate
bins ignore their imaginary parts.)
That lets black-box optimizers find strong stimuli with no trained generator at all
(benchmark in docs/BENCHMARKS.md).
"""

from __future__ import annotations

import numpy as np
import torch

from protocol.errors import ConfigError
from server.engine.generators.base import GENERATORS, Generator, pixel_logits

# Square root of the RGB colour correlation of natural images (columns: decorrelated
# components), the widely used ImageNet estimate; normalised to unit largest column norm.
_COLOUR_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32
)
_COLOUR_SQRT /= np.linalg.norm(_COLOUR_SQRT, axis=0).max()


@GENERATORS.register("fourier")
class FourierGenerator(Generator):
    """Code = real and imaginary Fourier coefficients of a ``resolution``-px image per colour.

    Shape ``(3, resolution, resolution // 2 + 1, 2)``; amplitude of frequency ``f`` is scaled
    by ``1 / max(f, 1 / resolution) ** decay``. The spatial image passes through the colour
    matrix and ``255 * sigmoid``, then is upsampled to the requested size. The overall scale
    is calibrated once so that N(0, 1) codes give pre-sigmoid pixels of unit std.
    """

    invertible = True

    def __init__(self, resolution: int = 48, decay: float = 1.0, **kwargs) -> None:
        if not 8 <= resolution <= 256:
            raise ConfigError(f"fourier resolution must be between 8 and 256, got {resolution}")
        if not 0.0 <= decay <= 3.0:
            raise ConfigError(f"fourier decay must be between 0 and 3, got {decay}")
        self.resolution = resolution
        self.code_shape = (3, resolution, resolution // 2 + 1, 2)
        self.native_size = resolution
        kwargs.setdefault("image_size", 224)
        super().__init__(**kwargs)
        fy = np.fft.fftfreq(resolution)[:, None]
        fx = np.fft.rfftfreq(resolution)[None, :]
        freq = np.sqrt(fx**2 + fy**2)
        #: Cycles per image of every code coordinate (the constant term counts as 1).
        self._cycles = np.broadcast_to(
            np.maximum(freq * resolution, 1.0)[None, :, :, None], self.code_shape
        ).reshape(-1)
        scale = 1.0 / np.maximum(freq, 1.0 / resolution) ** decay
        self._scale = torch.as_tensor(scale, dtype=torch.float32, device=self.device)
        self._colour = torch.as_tensor(_COLOUR_SQRT, device=self.device)
        self._gain = 1.0
        self._gain = 1.0 / float(self._logits(self._calibration_codes()).std())

    def code_frequencies(self) -> np.ndarray:
        return self._cycles.copy()

    def _calibration_codes(self) -> torch.Tensor:
        rng = torch.Generator().manual_seed(0)
        return torch.randn(256, self.code_dim, generator=rng).to(self.device)

    def _logits(self, codes: torch.Tensor) -> torch.Tensor:
        c = codes.view(-1, *self.code_shape)
        spectrum = torch.complex(c[..., 0], c[..., 1]) * self._scale
        decorrelated = torch.fft.irfft2(spectrum, s=(self.resolution, self.resolution))
        rgb = torch.einsum("ck,nkhw->nchw", self._colour, decorrelated)
        return rgb * self._gain

    def render(self, codes: torch.Tensor) -> torch.Tensor:
        return 255.0 * torch.sigmoid(self._logits(codes))

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """:meth:`_logits` run backwards: undo the gain and the colour matrix, then the
        inverse FFT (the real FFT of a real image holds exactly what irfft2 needs) and the
        1/f scaling."""
        rgb = pixel_logits(pixels.to(self.device)) / self._gain
        decorrelated = torch.einsum("kc,nchw->nkhw", torch.linalg.inv(self._colour), rgb)
        spectrum = torch.fft.rfft2(decorrelated) / self._scale
        return torch.stack([spectrum.real, spectrum.imag], dim=-1).reshape(len(pixels), -1)
