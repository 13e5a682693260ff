"""The one smoothed Coulomb friction rule, shared by every contact (MPM floor, walls and
colliders, mass-spring ground and colliders)."""
import taichi as ti


@ti.func
def coulomb(vt, dvn, mu, eps):
    """Tangential velocity after a contact that changed the normal velocity by dvn >= 0.

    Coulomb friction removes up to mu * dvn of the sliding speed; the rule
    vt * r / (r + mu dvn) with r = sqrt(|vt|^2 + eps^2) does so smoothly and never
    reverses vt. eps is a speed of the problem's own scale (a cell per substep times a
    small fraction, or a configured slip speed): no absolute epsilon."""
    r = ti.sqrt(vt.dot(vt) + eps * eps)
    return vt * (r / (r + mu * dvn))
