"""Gradient tests that bite (DESIGN section 5).

- multi-step finite-difference checks of plastic flow (plasticine, sand), started well past
  yield and driven so that every particle stays on its yield surface over the horizon;
- finite differences from exactly F = I, C = 0 (the rest state, where the 2D closed forms take
  their special cases) for every material;
- MPM repeatability to a tolerance (P2G's parallel float atomics sum in any order);
- f32 (the default runtime) against f64, in a subprocess: a tiny 3D fixed-corotated block on
  the spectral path, the mass-spring walker and a small FEM gel pressed by a sphere.

Cost: one 2D MPM configuration (five blocks, one per material, separated by more than the
B-spline stencil, so each block's loss depends only on its own inputs) serves the first three;
its kernels compile once.
"""
import json
import os
import subprocess
import sys
from importlib.resources import files

import numpy as np
import pytest
import yaml

from diffsuite.sims import adjoint, designs, gradcheck, sampling, tetmesh
from diffsuite.sims.fem import FEM
from diffsuite.sims.mass_spring import MassSpring
from diffsuite.sims.mpm import MPM

KINDS = ["fixed_corotated", "neo_hookean", "plasticine", "sand", "fluid"]
# the materials of tests/test_mpm.py, 30 times denser: the imposed plastic flow then outlasts
# the horizon instead of being stopped by its own stress within a few substeps
SCENE_MATERIALS = {
    "fixed_corotated": dict(kind="fixed_corotated", E=200, nu=0.3, density=30.0),
    "neo_hookean": dict(kind="neo_hookean", E=200, nu=0.3, density=30.0),
    "plasticine": dict(kind="plasticine", E=200, nu=0.3, yield_stress=5.0, density=30.0),
    "sand": dict(kind="sand", E=200, nu=0.3, friction_angle=35.0, density=30.0),
    "fluid": dict(kind="fluid", E=200, nu=0.3, viscosity=0.1, density=30.0),
}
OWN_PARAM = {"fixed_corotated": "nu", "neo_hookean": "nu", "plasticine": "yield_stress",
             "sand": "friction_angle", "fluid": "viscosity"}
DT = 1e-3
TESTS = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------- the 2D scene
def _make_scene():
    """Five 4 x 4 particle blocks in a row, block i of material KINDS[i]; one muscle group (the
    right half of every block). Blocks are 3 cells apart: no grid node is shared."""
    xs, mid = [], []
    for i in range(len(KINDS)):
        lo = np.array([0.12 + 0.16 * i, 0.47])
        x = sampling.sample({"kind": "box", "lower": lo, "upper": lo + 1 / 16 + 1e-9}, 1 / 64)
        xs.append(x)
        mid.append(np.full(len(x), i))
    x, mid = np.concatenate(xs), np.concatenate(mid)
    centre = np.array([0.12 + 0.16 * mid + 1 / 32, np.full(len(x), 0.47 + 1 / 32)]).T
    parts = {"x": x, "material": mid, "actuator": np.where(x[:, 0] > centre[:, 0], 0, -1)}
    sim = MPM(parts, [SCENE_MATERIALS[k] for k in KINDS], n_grid=32, dt=DT, segment=4)
    sim.block = mid
    sim.centre = centre
    return sim


@pytest.fixture(scope="module")
def scene():
    sim = _make_scene()
    yield sim
    sim.free()


def _run(sim, q, C0, T=None, every=None):
    """forward from the inputs in q (x0, v0, F0 of all particles, u, material parameters)."""
    params = {k: q[k] for k in sim.param_names}
    pose0 = sim.initial_state()[4]
    kw = {"every": every} if every else {}
    return adjoint.forward(sim, (q["x0"], q["v0"], C0, q["F0"], pose0), q["u"], params, **kw)


def _block_problem(sim, i, q0, C0, seed=0):
    """Loss on block i's (i None: every block's) final positions, velocities and deformation gradients, the adjoint
    gradients of all inputs, and a loss restricted to block i's inputs (other blocks fixed)."""
    rng = np.random.default_rng(seed)
    on = (np.ones(sim.P, bool) if i is None else sim.block == i)[None, :, None]
    wx, wF = rng.standard_normal(q0["x0"].shape) * on, rng.standard_normal(q0["F0"].shape) * on[..., None]

    def loss(q):
        _, fin, _ = _run(sim, q, C0)
        return float((fin[0] * wx).sum() + (on * fin[1] ** 2).sum() + (fin[3] * wF).sum())

    _, fin, tape = _run(sim, q0, C0)
    (gx, gv, _, gF, _), gu, gp = adjoint.backward(sim, tape, None, [wx, 2 * on * fin[1], None, wF])
    return loss, dict(x0=gx, v0=gv, F0=gF, u=gu, **gp)


def _restricted(sim, i, q0, g, loss, F_basis=None):
    """(loss of block i's own inputs, those inputs, their gradients): the FD check perturbs
    only block i's particles and material, plus the shared muscle controls.

    F_basis (k, 2, 2): perturb F0 only in the span of these matrices (per particle)."""
    sel = sim.block == i
    p = {"x0": q0["x0"][:, sel], "v0": q0["v0"][:, sel], "u": q0["u"],
         "E": q0["E"][:, i], OWN_PARAM[KINDS[i]]: q0[OWN_PARAM[KINDS[i]]][:, i]}
    gr = {"x0": g["x0"][:, sel], "v0": g["v0"][:, sel], "u": g["u"],
          "E": g["E"][:, i], OWN_PARAM[KINDS[i]]: g[OWN_PARAM[KINDS[i]]][:, i]}
    if F_basis is None:
        p["F0"], gr["F0"] = q0["F0"][:, sel], g["F0"][:, sel]
    else:
        p["F0c"] = np.zeros((1, sel.sum(), len(F_basis)))
        gr["F0c"] = np.einsum("bpij,kij->bpk", g["F0"][:, sel], F_basis)

    def sub(r):
        q = {k: np.array(v, dtype=np.float64) for k, v in q0.items()}
        q["x0"][:, sel], q["v0"][:, sel], q["u"] = r["x0"], r["v0"], r["u"]
        q["F0"][:, sel] = r["F0"] if F_basis is None else q0["F0"][:, sel] + np.einsum("bpk,kij->bpij", r["F0c"], F_basis)
        for k in ("E", OWN_PARAM[KINDS[i]]):
            if k in r:
                q[k][:, i] = r[k]
        return loss(q)
    return sub, p, gr


def _rest_inputs(sim, T, seed=0):
    x0, v0, C0, F0, _ = sim.initial_state()
    rng = np.random.default_rng(seed)
    return dict(x0=x0, v0=v0, F0=F0, u=rng.uniform(-1, 1, (sim.B, T, sim.A)), **sim.get_params()), C0


def _lame(E, nu):
    return E / (2 * (1 + nu)), E * nu / ((1 + nu) * (1 - 2 * nu))


def _flow_inputs(sim, T, seed=0):
    """Plasticine and sand started well past yield, with an affine velocity field (and the
    matching APIC C) that keeps them flowing the same way; the other blocks at rest."""
    q, C0 = _rest_inputs(sim, T, seed)
    rng = np.random.default_rng(seed + 1)
    q["u"] = 0.3 * q["u"]
    for kind, strain, rate in (("plasticine", [0.08, -0.08], [20.0, -20.0]),   # isochoric stretch along x
                               ("sand", [0.02, -0.05], [20.0, -30.0])):        # sheared while compacted
        sel = sim.block == KINDS.index(kind)
        n = sel.sum()
        q["F0"][:, sel] = np.diag(np.exp(strain)) + 0.005 * rng.standard_normal((1, n, 2, 2))
        q["v0"][:, sel] = rate * (q["x0"][:, sel] - sim.centre[sel]) + 0.02 * rng.standard_normal((1, n, 2))
        C0[:, sel] = np.diag(rate)
    return q, C0


def _yield_margins(sim, q, C0, outs, T):
    """Per kind, the smallest plastic margin over the horizon of that block's particles, from
    the trial F (before the return) at every substep: plasticine 1 - yield / (2 mu |dev eps|)
    (> 0: the von Mises return acts), sand min(-tr eps, dgamma / |dev eps|) (> 0: compressed
    and outside the Drucker-Prager cone, so the cone return acts)."""
    C = np.concatenate([C0[:, None], outs[2][:, :T - 1]], 1)[0]
    F = np.concatenate([q["F0"][:, None], outs[3][:, :T - 1]], 1)[0]
    Ft = (np.eye(2) + DT * C) @ F
    lam, _ = np.linalg.eigh(Ft @ Ft.transpose(0, 1, 3, 2))
    eps = 0.5 * np.log(lam)
    tr = eps.sum(-1)
    norm = np.linalg.norm(eps - tr[..., None] / 2, axis=-1)
    out = {}
    for kind in ("plasticine", "sand"):
        i = KINDS.index(kind)
        sel = sim.block == i
        mu, la = _lame(q["E"][0, i], q["nu"][0, i])
        if kind == "plasticine":
            m = 1 - q["yield_stress"][0, i] / (2 * mu * norm)
        else:
            s = np.sin(np.radians(q["friction_angle"][0, i]))
            alpha = np.sqrt(2 / 3) * 2 * s / (3 - s)
            dgamma = norm + (2 * la + 2 * mu) / (2 * mu) * tr * alpha
            m = np.minimum(-tr / np.abs(eps).max(-1), dgamma / norm)
        out[kind] = float(m[:, sel].min())
    return out


# ----------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("kind", ["plasticine", "sand"])
def test_plastic_flow_gradients_over_many_substeps(scene, kind):
    """12 substeps (3 checkpoint segments) of plastic flow against finite differences.

    Away from the yield onset, not smoothed: the block starts well past yield (plasticine: an
    isochoric Hencky stretch of 0.08, 3.5 times the yield strain; sand: compacted and sheared
    outside the Drucker-Prager cone) and moves with an affine velocity field (and the matching
    APIC C) that keeps deforming it the same way, so at every substep every particle's trial
    state lies strictly outside the yield surface (the margins are asserted): each return is
    a smooth function of its inputs, and finite differences straddle no kink. (Started at rest,
    a particle returned exactly onto the surface would sit on the kink the next substep.)"""
    sim, T, i = scene, 12, KINDS.index(kind)
    q, C0 = _flow_inputs(sim, T)
    outs, _, _ = _run(sim, q, C0, every=1)
    margin = _yield_margins(sim, q, C0, outs, T)[kind]
    assert margin > 0.05, f"{kind} left the yield surface (margin {margin:.3g}): the check would straddle a kink"
    loss, g = _block_problem(sim, i, q, C0)
    sub, p, gr = _restricted(sim, i, q, g, loss)
    gradcheck.assert_close(sub, p, gr, rtol=1e-5)
    assert all(np.abs(gr[k]).max() > 0 for k in p), {k: float(np.abs(v).max()) for k, v in gr.items()}


# traceless 2 x 2 directions: along them det(I + t D) = 1 + O(t^2), so sand's volumetric
# strain keeps one sign on both sides of t = 0 (see the identity test)
TRACELESS = np.array([[[1.0, 0.0], [0.0, -1.0]], [[0.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 0.0]]])


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_from_exact_identity(scene, kind):
    """From exactly F = I, C = 0, v = 0 (the rest state) through 3 substeps: the polar rotation,
    the Hencky log / exp series branches, the deviatoric norm at zero and J^(1/d) at J = 1 all
    meet their special case in the first substep. Muscles (random controls) then set the block
    moving, so the later substeps leave the identity.

    Sand is the one exception to a plain FD check: F = I is the apex of the Drucker-Prager
    cone, where the return map is not differentiable (central differences of a kink, not a
    bug), so F0 is perturbed there only along traceless directions, where it is (both sides
    of t = 0 take the same branch); every other input is perturbed freely.

    Not checked here: the material parameters. At rest the strain is O(dt^2), so their
    gradients are ~1e-8 and central differences cannot resolve them (FD noise, not a bug);
    the flow test above and tests/test_mpm.py check them. The differences step 1e-5
    (relative), not 1e-6: measured, the controls' gradient (~1e-4) carries FD noise growing
    as 1/eps (~1e-5 relative at 1e-6), the positions' truncation error grows as eps^2
    (1e-4 at 1e-4), and sand's apex leaves a t|t| term (the cone return's tr/|dev| factor)
    whose error grows as eps (5.7e-5 at 1e-5 over one substep, 7e-8 over three): all
    FD artefacts that shrink with the step as they should; 1e-5 keeps each below 1e-6."""
    sim, T, i = scene, 3, KINDS.index(kind)
    q, C0 = _rest_inputs(sim, T, seed=2)
    assert np.array_equal(q["F0"], np.broadcast_to(np.eye(2), q["F0"].shape)) and not C0.any() and not q["v0"].any()
    loss, g = _block_problem(sim, i, q, C0, seed=3)
    assert all(np.isfinite(v).all() for v in g.values())
    sub, p, gr = _restricted(sim, i, q, g, loss, F_basis=TRACELESS if kind == "sand" else None)
    for k in ("E", OWN_PARAM[kind]):
        del p[k], gr[k]
    gradcheck.assert_close(sub, p, gr, rtol=1e-5, eps=1e-5)
    fkey = "F0c" if kind == "sand" else "F0"
    assert np.abs(gr[fkey]).max() > 0 and np.abs(gr["u"]).max() > 0


def test_mpm_forward_and_backward_repeat_to_rounding(scene):
    """The same forward + backward twice (plastic flow and muscles in all five blocks): P2G
    scatters with parallel float atomics, whose summation order may differ between runs, so
    the results agree to rounding (1e-10 relative), not necessarily bitwise."""
    sim, T = scene, 12
    q, C0 = _flow_inputs(sim, T, seed=4)
    runs = []
    for _ in range(2):
        loss, g = _block_problem(sim, None, q, C0, seed=5)
        _, fin, _ = _run(sim, q, C0)
        runs.append((fin, g))
    (fin0, g0), (fin1, g1) = runs
    for a, b in zip(fin0, fin1):
        assert np.isfinite(a).all() and np.allclose(a, b, rtol=1e-10, atol=1e-12 * (np.abs(a).max() + 1e-300))
    for k in g0:
        assert np.isfinite(g0[k]).all() and np.isfinite(g1[k]).all(), k
        scale = np.abs(g0[k]).max()
        assert np.abs(g0[k] - g1[k]).max() <= 1e-10 * scale, (k, float(np.abs(g0[k] - g1[k]).max()), float(scale))
    assert np.abs(g0["x0"]).max() > 0 and np.abs(g0["E"]).min() > 0  # every block's modulus matters


# ----------------------------------------------------------------- f32 against f64
def _walker_design():
    text = files("diffsuite.configs.robots").joinpath("walker_a.yaml").read_text()
    return designs.build(yaml.safe_load(text))


def _precision_problems():
    """Forward and adjoint of two small problems in this process's precision: a tiny 3D
    fixed-corotated block (27 particles, n_grid 12: the spectral path, 3 substeps over two
    segments) and the mass-spring walker (40 substeps, ground contact). Returns
    {name: {"loss": float, "grads": {input: list}}}, JSON-ready."""
    out = {}
    rng = np.random.default_rng(0)
    x = sampling.sample({"kind": "box", "lower": [0.4] * 3, "upper": [0.5] * 3}, 1 / 32)
    sim = MPM({"x": x, "actuator": np.where(x[:, 0] > 0.45, 0, -1)},
              [dict(kind="fixed_corotated", E=200, nu=0.3)], n_grid=12, dt=DT, segment=2)
    assert sim.spectral
    x0, v0, C0, F0, pose0 = sim.initial_state()
    v0 = v0 + 0.3 * rng.standard_normal(v0.shape)
    F0 = F0 + 0.05 * rng.standard_normal(F0.shape)
    u = rng.uniform(-1, 1, (1, 3, sim.A))
    w = rng.standard_normal(x0.shape)
    _, fin, tape = adjoint.forward(sim, (x0, v0, C0, F0, pose0), u)
    (gx, gv, _, gF, _), gu, gp = adjoint.backward(sim, tape, None, [w, 2 * fin[1], None, None])
    out["mpm3d"] = dict(loss=float((fin[0] * w).sum() + (fin[1] ** 2).sum()),
                        grads=dict(x0=gx, v0=gv, F0=gF, u=gu, E=gp["E"], nu=gp["nu"]))
    sim.free()
    walker = MassSpring(_walker_design(), num_worlds=2, segment=16)
    x0, v0 = walker.initial_state()
    x0 = x0 + 0.002 * rng.standard_normal(x0.shape)
    v0 = 0.1 * rng.standard_normal(x0.shape)
    u = rng.uniform(-1, 1, (2, 40, walker.A))
    wx = rng.standard_normal((2, 8, walker.N, 2))
    outs, fin, tape = adjoint.forward(walker, (x0, v0), u, every=5)
    (gx, gv), gu, gp = adjoint.backward(walker, tape, [wx, None], [None, 2 * fin[1]])
    out["walker"] = dict(loss=float((outs[0] * wx).sum() + (fin[1] ** 2).sum()),
                         grads=dict(x0=gx, v0=gv, u=gu, k=gp["stiffness"]))
    walker.free()
    # a small FEM gel pressed by a sphere under one of its bottom vertices (40 substeps, two segments)
    ball = {"shape": "sphere", "radius": 0.01, "position": [0.0035, -0.0198, 0.0032], "friction": 0.5}
    gel = FEM(tetmesh.box([0.02, 0.01, 0.02], [3, 2, 3]), dt=2e-5, segment=20, objects=[ball],
              material=dict(E=1e5, nu=0.4, density=1000.0, damping=2e-4))
    x0, v0, body, pose, contact, clock = gel.initial_state()
    v0 = 0.01 * rng.standard_normal(v0.shape)
    u = rng.uniform(-0.1, 0.1, (1, 40, gel.A)) + np.r_[[0.0] * 7, 0.5, 0, 0, 0, 0]
    w = rng.standard_normal(x0.shape) * 1e3
    _, fin, tape = adjoint.forward(gel, (x0, v0, body, pose, contact, clock), u)
    (gx, gv, _, gpose, _, _), gu, gp = adjoint.backward(gel, tape, None, [w, 2 * fin[1]])
    out["fem"] = dict(loss=float(((fin[0] - x0) * w).sum() + (fin[1] ** 2).sum()),
                      grads=dict(x0=gx, v0=gv, u=gu, pose=gpose[..., :3], E=gp["E"], density=gp["density"]))
    gel.free()
    return {name: dict(loss=r["loss"], grads={k: np.asarray(v, np.float64).tolist() for k, v in r["grads"].items()})
            for name, r in out.items()}


_F32_SCRIPT = (
    "import json, sys; sys.path.insert(0, sys.argv[1]); import test_gradients as t; "
    "from diffsuite.sims import float_dtype; import taichi as ti; assert float_dtype() == ti.f32; "
    "json.dump(t._precision_problems(), open(sys.argv[2], 'w'))"
)


def _start_f32(tmp):
    cache = os.environ.get("TI_OFFLINE_CACHE_FILE_PATH", os.path.expanduser("~/.cache/taichi/ticache"))
    env = {**os.environ, "DIFFSUITE_FP": "f32", "DIFFSUITE_ARCH": "cpu", "TI_OFFLINE_CACHE_FILE_PATH": f"{cache}-f32"}
    out, log = tmp / "f32.json", tmp / "f32.log"
    with open(log, "w") as fh:  # a file, not a pipe: Taichi's compile warnings would fill a pipe
        proc = subprocess.Popen([sys.executable, "-c", _F32_SCRIPT, TESTS, str(out)], env=env, stdout=fh,
                                stderr=subprocess.STDOUT, cwd=TESTS)
    return proc, out, log


@pytest.fixture(scope="module", autouse=True)
def _f32_subprocess(request, tmp_path_factory):
    """The f32 run, started with the module's first test so that its compiles overlap this
    process's, when the f32 test is selected. Under pytest-xdist every worker sees every
    item, so there the test starts it itself (the workers overlap anyway)."""
    wanted = any(getattr(item, "originalname", None) == "test_f32_matches_f64" for item in request.session.items)
    if not wanted or os.environ.get("PYTEST_XDIST_WORKER"):
        yield None
        return
    run = _start_f32(tmp_path_factory.mktemp("f32"))
    yield run
    if run[0].poll() is None:
        run[0].kill()
        run[0].wait()


def test_f32_matches_f64(_f32_subprocess, tmp_path):
    """f32, the default runtime, against f64: the same forward and gradients in a fresh f32
    process (DIFFSUITE_FP=f32, CPU, its own offline cache) and here in f64. Tolerances fit
    f32 over a few dozen substeps: loss and gradient norms to 1e-3 relative, gradient
    directions to cosine similarity 0.999 (per input)."""
    ref = _precision_problems()
    proc, out, log = _f32_subprocess or _start_f32(tmp_path)
    try:
        rc = proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, f"f32 subprocess failed (rc {rc}):\n" + log.read_text()[-3000:]
    f32 = json.loads(out.read_text())
    assert set(f32) == set(ref)
    for name, r64 in ref.items():
        r32 = f32[name]
        assert np.isfinite(r32["loss"]) and abs(r32["loss"] - r64["loss"]) <= 1e-3 * abs(r64["loss"]), \
            (name, r32["loss"], r64["loss"])
        for k, g64 in r64["grads"].items():
            a, b = np.ravel(r32["grads"][k]), np.ravel(g64)
            assert np.isfinite(a).all(), (name, k)
            na, nb = np.linalg.norm(a), np.linalg.norm(b)
            # the FEM's parameter gradients sum every tet's share by float atomics: 5e-3 in f32
            assert nb > 0 and abs(na / nb - 1) <= (5e-3 if name == "fem" else 1e-3), (name, k, na, nb)
            cos = float(a @ b / (na * nb))
            assert cos > 0.999, (name, k, cos)
