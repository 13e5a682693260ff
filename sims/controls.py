"""Per-substep controls held in an `act` field of shape (B, K, max(A, 1)), shared by the simulators."""
import numpy as np


class Controls:
    """Needs self.act, self.B, self.K, self.A, self.np_dtype."""

    def set_controls(self, u):
        """Per-substep actions u of shape (B, n, A), n <= K."""
        buf = np.zeros((self.B, self.K, max(self.A, 1)), dtype=self.np_dtype)
        buf[:, :u.shape[1], :self.A] = u
        self.act.from_numpy(buf)

    def control_grad(self, n):
        return self.act.grad.to_numpy()[:, :n, :self.A].astype(np.float64)
