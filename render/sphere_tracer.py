"""Differentiable sphere tracing of SDF scenes built from sims/sdf.py (DESIGN section 6).

Two passes, as Pulsar and nvdiffrast do:
1. visibility without a tape (Taichi): each ray marches the scene's SDF, then refines the
   hit by Newton steps; it records the hit distance and object, or for a miss the point of
   closest approach and its object. Memory does not grow with the march's steps.
2. a differentiable pass over those records (torch + one Taichi op, `query`, the SDF value
   and gradient of an object at given points, with its reverse by Taichi autodiff):
   - a hit moves with the scene by implicit differentiation of sdf(x(t)) = 0 (IDR):
     t = t0 - f(x0; theta) / (grad f . d), with the denominator held fixed;
   - a miss covers its pixel by 2 sigmoid(-f(x*) / width), f(x*) the closest approach
     (1 at the silhouette, fading outside it): the silhouette's gradient; x* moves with the
     scene by implicit differentiation of df/dt(x*(t)) = 0 (its curvature held fixed);
   - Lambert + Blinn-Phong shading (render/shading.py) at the surface point.
Objects are any sims/sdf.py shape (primitives, smooth CSG, a trimesh mesh's grid SDF) with a pose (position +
quaternion) and a uniform scale, both differentiable, and a material (albedo, specular,
shininess). Not differentiated: which object a ray sees, and shadows (none yet).
"""
import numpy as np
import taichi as ti
import torch

from ..sims import float_dtype, init, sdf
from .shading import blinn_phong

OBJECT_KEYS = ("position", "quat", "scale", "color", "specular", "shininess")
STENCIL = 7  # a query point and its six central-difference neighbours


@ti.data_oriented
class SDFScene:
    """objects: dicts of a sims/sdf.py shape plus position, quat (w, x, y, z), scale,
    color (RGB albedo in [0, 1]), specular, shininess. `params()` gives their tensors.
    march_steps: the march's most steps a ray (`steps`, changeable: a kernel argument)."""

    def __init__(self, objects, march_steps=128):
        init()
        if not objects:
            raise ValueError("an SDF scene needs at least one object")
        self.shapes = [sdf.shape(o, 3, f"objects[{i}]", extra=OBJECT_KEYS) for i, o in enumerate(objects)]
        self.objects, self.n, self.steps = objects, len(objects), int(march_steps)
        self.dtype = float_dtype()
        self.np_dtype = np.float64 if self.dtype == ti.f64 else np.float32
        self.pose = ti.Vector.field(7, self.dtype, shape=self.n, needs_grad=True)
        self.scale = ti.field(self.dtype, shape=self.n, needs_grad=True)
        # the central differences' step: 1e-4 of each object's scale as built, a constant of the
        # scene (not of the parameters), so the gradient's reverse is that of f alone
        self.h = ti.field(self.dtype, shape=self.n)
        self.h.from_numpy(1e-4 * self.params(torch.float64)["scale"].numpy().astype(self.np_dtype))
        # bounding radii at unit scale: rays that pass them far are misses, never marched
        self.bound = [min(sdf.radius(sh), 1e30) for sh in self.shapes]
        self._N, self._tree = 0, None

    def params(self, dtype=torch.float64):
        """The objects' differentiable tensors: pose (n, 7), scale (n,), color (n, 3), specular (n,), shininess (n,)."""
        get = lambda k, d: torch.tensor([np.broadcast_to(np.asarray(o.get(k, d), float), np.shape(d)).tolist()
                                         for o in self.objects],
                                        dtype=dtype)
        pose = torch.cat([get("position", [0.0, 0.0, 0.0]), get("quat", [1.0, 0.0, 0.0, 0.0])], -1)
        return dict(pose=pose, scale=get("scale", 1.0), color=get("color", [0.8, 0.8, 0.8]),
                    specular=get("specular", 0.0), shininess=get("shininess", 16.0))

    def _buffers(self, N):
        """Query buffers for N points. They only grow (by half at least, from 4096 points):
        new fields mean new SNodes, hence a new compile of the query and its reverse."""
        if N <= self._N:
            return
        if self._tree is not None:
            self._tree.destroy()
        N = max(N, self._N * 3 // 2, 4096)
        fb = ti.FieldsBuilder()
        self.qx = ti.Vector.field(3, self.dtype, needs_grad=True)
        self.qg, self.qf, self.qid = ti.Vector.field(3, self.dtype), ti.field(self.dtype), ti.field(ti.i32)
        self.qw, self.qo = ti.field(self.dtype), ti.field(self.dtype, needs_grad=True)  # the reverse's stencil
        fb.dense(ti.i, N).place(self.qx, self.qg, self.qf, self.qid, self.qx.grad)
        fb.dense(ti.i, N * STENCIL).place(self.qw, self.qo, self.qo.grad)
        self._tree, self._N = fb.finalize(), N

    def _pad(self, a, dtype):
        """a (n, ...) as a numpy array of the buffers' length, zeros after row n."""
        a = np.asarray(a, dtype)
        return np.concatenate([a, np.zeros((self._N - len(a), *a.shape[1:]), dtype)])

    def _set_objects(self, pose, scale):
        self.pose.from_numpy(pose.detach().cpu().numpy().astype(self.np_dtype))
        self.scale.from_numpy(scale.detach().cpu().numpy().astype(self.np_dtype))

    # ------------------------------------------------------------ SDF of one object
    @ti.func
    def _object(self, k: ti.template(), x):
        s = self.scale[k]
        return s * sdf.evaluate(self.shapes[k], sdf.to_local(self.pose[k], x) / s)

    @ti.func
    def _scene(self, x):
        best, which = self._object(0, x), 0
        for k in ti.static(range(1, self.n)):
            f = self._object(k, x)
            if f < best:
                best, which = f, k
        return best, which

    @ti.func
    def _grad(self, k: ti.template(), x):
        """grad f by central differences (step self.h[k])."""
        h = self.h[k]
        g = x * 0
        for i in ti.static(range(3)):
            e = ti.Vector.unit(3, i, self.dtype) * h
            g[i] = (self._object(k, x + e) - self._object(k, x - e)) / (2 * h)
        return g

    # ------------------------------------------------------------ pass 1: visibility
    @ti.kernel
    def _march(self, o: ti.types.ndarray(), d: ti.types.ndarray(), far: ti.f64, reach: ti.f64, steps: ti.i32,
               t_out: ti.types.ndarray(),
               id_out: ti.types.ndarray(), hit_out: ti.types.ndarray()):
        for r in range(o.shape[0]):
            ro = ti.Vector([o[r, 0], o[r, 1], o[r, 2]], self.dtype)
            rd = ti.Vector([d[r, 0], d[r, 1], d[r, 2]], self.dtype)
            eps = 1e-6 * far  # a length of the scene's own: its far plane
            t, best, t_best, id_best, hit, id_hit = 0.0, 1e30, 0.0, 0, 0, 0
            lo, hi, t_prev = 0.0, 0.0, 0.0
            ahead = 0  # does the ray pass within `reach` of some object's bounding sphere?
            for k in ti.static(range(self.n)):
                oc = ti.Vector([self.pose[k][0], self.pose[k][1], self.pose[k][2]]) - ro
                tc = oc.dot(rd)
                R = self.bound[k] * self.scale[k] + reach
                if oc.dot(oc) - tc * tc < R * R and tc + R > 0:
                    ahead = 1
            for _ in range(steps):
                if ahead == 1 and hit == 0 and t < far:
                    f, k = self._scene(ro + t * rd)
                    if f < best:  # the closest sample so far, bracketed by its neighbours
                        best, t_best, id_best, lo, hi = f, t, k, t_prev, t + f
                    if f < eps:
                        hit, id_hit = 1, k
                    else:
                        t_prev = t
                        t += f
            if hit == 1:  # Newton steps on the hit object: the hit to rounding, not to eps
                for _ in range(3):
                    x = ro + t * rd
                    for k in ti.static(range(self.n)):
                        if id_hit == k:
                            den = self._grad(k, x).dot(rd)
                            if den < 0:
                                t -= self._object(k, x) / den
                t_best, id_best = t, id_hit
            elif ahead == 1 and best < reach:  # a miss near the surface: the closest approach itself (golden section in
                # the bracket), so that the silhouette's gradient (the envelope theorem's) is the
                # derivative of what it covers; farther misses cover nothing worth the search
                for k in ti.static(range(self.n)):
                    if id_best == k:
                        g = 0.618033988749895  # each step keeps one probe: one SDF evaluation a step
                        a, b = lo, hi
                        c, e = b - g * (b - a), a + g * (b - a)
                        fc, fe = self._object(k, ro + c * rd), self._object(k, ro + e * rd)
                        for _ in range(40):  # the bracket shrinks by 0.618^40 ~ 4e-9
                            if fc < fe:
                                b, e, fe = e, c, fc
                                c = b - g * (b - a)
                                fc = self._object(k, ro + c * rd)
                            else:
                                a, c, fc = c, e, fe
                                e = a + g * (b - a)
                                fe = self._object(k, ro + e * rd)
                        t_best = 0.5 * (a + b)
                hit = 2  # refined
            t_out[r], id_out[r], hit_out[r] = t_best, id_best, hit

    def march(self, origins, dirs, far, pose, scale, reach=float("inf")):
        """Visibility records of rays (N, 3) through objects at pose (n, 7), scale (n,):
        distance, object, hit flag and near flag (a miss within `reach` of the surface, its
        closest approach refined; a far miss's distance is only its nearest sample). No tape."""
        self._set_objects(pose, scale)
        o = np.ascontiguousarray(origins.detach().cpu().numpy(), dtype=np.float64)
        d = np.ascontiguousarray(dirs.detach().cpu().numpy(), dtype=np.float64)
        t, ids, hit = np.zeros(len(o)), np.zeros(len(o), np.int32), np.zeros(len(o), np.int32)
        self._march(o, d, float(far), float(min(reach, 1e300)), int(self.steps), t, ids, hit)
        return (torch.as_tensor(t), torch.as_tensor(ids.astype(np.int64)), torch.as_tensor(hit == 1),
                torch.as_tensor(hit == 2))

    # ------------------------------------------------------------ pass 2: the query op
    @ti.kernel
    def _query(self, n: ti.i32):
        for i in range(n):
            x = self.qx[i]
            f, g = x[0] * 0, x * 0
            for k in ti.static(range(self.n)):
                on = self.qid[i] == k
                f = ti.select(on, self._object(k, x), f)
                g = ti.select(on, self._grad(k, x), g)
            self.qf[i] = f
            self.qg[i] = g

    @ti.kernel
    def _probe(self, n: ti.i32):
        """qo[j] = qw[j] f(y_j) over the query's stencil: y = x_i, then x_i +- h e_a (j = 7 i + s).
        Its reverse, with qo.grad = 1, is the query's: f and its central differences are
        linear in these values, and the weights hold the incoming gradients."""
        for j in range(STENCIL * n):
            i, s = j // STENCIL, j % STENCIL
            a = (s - 1) // 2
            sign = 1.0 - 2.0 * ((s - 1) % 2)
            e = ti.Vector([a == 0, a == 1, a == 2], self.dtype) * sign * (s > 0)
            for k in ti.static(range(self.n)):
                if self.qid[i] == k:
                    self.qo[j] = self.qw[j] * self._object(k, self.qx[i] + self.h[k] * e)

    def _run_query(self, x, ids, pose, scale):
        self._buffers(len(x))
        self._set_objects(pose, scale)
        self.qx.from_numpy(self._pad(x.detach().cpu().numpy(), self.np_dtype))
        self.qid.from_numpy(self._pad(ids.cpu().numpy(), np.int32))
        self._query(len(x))

    def query(self, x, ids, pose, scale):
        """SDF value f (N,) and gradient g (N, 3) of object ids[i] at points x[i]; differentiable
        in x, pose and scale."""
        return _Query.apply(self, x, ids, pose, scale)

    def free(self):
        if self._tree is not None:
            self._tree.destroy()
            self._tree, self._N = None, 0


class _Query(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scene, x, ids, pose, scale):
        scene._run_query(x, ids, pose, scale)
        ctx.scene = scene
        ctx.save_for_backward(x, ids, pose, scale)
        like = lambda a: torch.as_tensor(a, dtype=x.dtype, device=x.device)
        n = len(x)
        return like(scene.qf.to_numpy()[:n]), like(scene.qg.to_numpy()[:n])

    @staticmethod
    def backward(ctx, gf, gg):
        scene = ctx.scene
        x, ids, pose, scale = ctx.saved_tensors
        scene._run_query(x, ids, pose, scale)  # the fields may hold another query by now
        for fld in (scene.qx.grad, scene.pose.grad, scene.scale.grad):
            fld.fill(0)
        # stencil weights: gf for f itself, +-gg_a / (2 h) for the central differences
        h = scene.h.to_numpy()[ids.cpu().numpy()][:, None]
        gg = gg.detach().cpu().numpy() / (2 * h)
        w = np.concatenate([gf.detach().cpu().numpy()[:, None], np.stack([gg, -gg], -1).reshape(len(x), 6)], 1)
        scene.qw.from_numpy(scene._pad(w.reshape(-1, STENCIL), scene.np_dtype).reshape(-1))
        scene.qo.grad.fill(1)
        scene._probe.grad(len(x))
        like = lambda a, t: torch.as_tensor(a, dtype=t.dtype, device=t.device)
        return (None, like(scene.qx.grad.to_numpy()[:len(x)], x), None, like(scene.pose.grad.to_numpy(), pose),
                like(scene.scale.grad.to_numpy(), scale))


def render(scene, camera, light, params=None, far=None, width=None, background=(0.0, 0.0, 0.0), rays=None):
    """Render V views: a dict of rgb (V, H, W, 3), depth (V, H, W; along the ray, 0 where
    nothing), normal (V, H, W, 3), mask (V, H, W; soft coverage).

    scene: SDFScene; camera: render/camera.Camera; light: render/shading.lights(...);
    params: scene.params() or tensors like them (with requires_grad to differentiate);
    far: the march's reach (default: 4x the camera's distance to its target);
    width: the silhouette band (default: 1.5 pixels' width at the target's distance);
    rays: camera.rays(), when the caller has them already.
    """
    params = params if params is not None else scene.params(camera.eye.dtype)
    V, H, W = camera.V, camera.height, camera.width
    reach = (camera.eye - camera.target).norm(dim=-1).max()
    dist = float(reach.detach())
    far = 4 * dist if far is None else float(far)
    if width is None:  # a function of the camera: it moves with it, differentiably
        width = 1.5 * (camera.ortho / H if camera.ortho is not None else reach / camera.fy.min())
    o, d = (a.reshape(-1, 3) for a in (camera.rays() if rays is None else rays))
    # misses farther than 16 band widths would cover under 2 sigmoid(-16) ~ 2e-7: left out, as
    # background, of the refinement and of the differentiable pass
    t0, ids, hit, near = scene.march(o, d, far, params["pose"], params["scale"],
                                     reach=16 * float(torch.as_tensor(width).detach()))
    rows, N = (hit | near).nonzero()[:, 0], len(o)
    o, d, t0, ids, hit = o[rows], d[rows], t0[rows].to(o.dtype), ids[rows], hit[rows]
    x0 = o + t0[:, None] * d
    f0, g0 = scene.query(x0, ids, params["pose"], params["scale"])
    slope = (g0 * d).sum(-1)  # df/dt along the ray: < 0 at a hit, 0 at a closest approach
    with torch.no_grad():  # d2f/dt2 by central differences, for the closest approach's motion
        h = 1e-4 * dist
        curv = ((scene.query(x0 + h * d, ids, params["pose"], params["scale"])[1]
                 - scene.query(x0 - h * d, ids, params["pose"], params["scale"])[1]) * d).sum(-1) / (2 * h)
    den = torch.where(hit & (slope < 0), slope, -torch.ones_like(slope)).detach()
    approach = ~hit & (curv > 0)
    curv = torch.where(approach, curv, torch.ones_like(curv))
    # implicit differentiation, IDR-style: a hit follows f(x(t)) = 0, a miss's closest point df/dt = 0
    t = torch.where(hit, t0 - f0 / den, torch.where(approach, t0 - slope / curv, t0))
    x = o + t[:, None] * d
    f, g = scene.query(x, ids, params["pose"], params["scale"])
    n = g / g.norm(dim=-1, keepdim=True)
    cover = torch.where(hit, torch.ones_like(f), 2 * torch.sigmoid(-f.clamp(min=0) / width))
    shade = blinn_phong(x, n, d, params["color"][ids], params["specular"][ids], params["shininess"][ids], light)
    bg = torch.as_tensor(background, dtype=o.dtype)
    scatter = lambda full, part: full.index_put((rows,), part)
    rgb = scatter(bg.expand(N, 3), cover[:, None] * shade + (1 - cover[:, None]) * bg)
    zeros = torch.zeros(N, dtype=o.dtype)
    out = dict(rgb=rgb.reshape(V, H, W, 3), depth=scatter(zeros, t * hit).reshape(V, H, W),
               normal=scatter(zeros[:, None].expand(N, 3), n * hit[:, None]).reshape(V, H, W, 3),
               mask=scatter(zeros, cover).reshape(V, H, W))
    return out
