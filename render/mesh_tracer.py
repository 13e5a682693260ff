"""Differentiable rendering of triangle meshes (DESIGN section 6), two passes as in nvdiffrast.

1. visibility without a tape (Taichi, one kernel): for every (view, triangle) in parallel,
   the triangle's projected vertices bound a box of pixels; each pixel's ray is tested
   against the triangle exactly (Moller-Trumbore) and the nearest hit per pixel is kept by
   an atomic min on a 64-bit key: the hit distance's float32 bits above (positive floats
   order as integers), the triangle id below. The same kernel decodes the keys and marks the
   pixel pairs the antialiasing pass will blend (below). No gradients, no memory per step.
   Triangles with a vertex behind the camera (pinhole: depth <= 1e-3 of the camera's distance
   to its target) are skipped, not clipped.
2. a differentiable pass in torch over the hit pixels only: Moller-Trumbore again, as torch
   expressions of the gathered vertices and the camera's rays, gives the distance and the
   barycentrics, hence the interpolated vertex colour, the normal (flat, or smooth vertex
   normals) and the shading point; shading is render/shading.blinn_phong. Gradients reach
   vertices, colours, lights, specular/shininess and the camera.
3. silhouettes: the analytic edge antialiasing of nvdiffrast (Laine et al. 2020, "Modular
   primitives for high-performance differentiable rendering", its antialiasing section). For
   each horizontally or vertically adjacent pixel pair whose triangles differ, the nearer
   one's triangle is "in front". From it the kernel walks along the segment between the two
   pixel centres through the mesh, across edges that are not silhouettes, until it reaches the
   other pixel's triangle (one connected surface: nothing to blend) or leaves the surface by a
   silhouette edge: a boundary edge, an edge whose other face folds away from the camera (both
   third vertices on one side of the projected edge), or whose other face was skipped. (The
   walk matters where triangles are smaller than pixels and cover no pixel centre.) The
   crossing's fraction alpha along the segment, from that edge's endpoints through
   camera.project (differentiable), blends the two colours: the pixel in whose half the
   crossing lies takes a share |alpha - 1/2| of the other's colour. The image is then
   continuous in the vertex positions, and the silhouette alone carries gradient to them. The
   mask (coverage) is blended alike.

Not here: shadows (the sphere/mesh shadow rays are another module's job), transparency.
Not differentiated: which triangle a pixel sees, which edges are silhouettes. Edges shared by
more than two faces count as boundaries. Depth ties closer than float32 resolution go to the
lower triangle id.
"""
from pathlib import Path

import numpy as np
import taichi as ti
import torch

from ..sims import float_dtype, init
from .camera import Camera
from .shading import KINDS, blinn_phong, kernel_lights, light_term

SENTINEL = 2 ** 63 - 1  # the key of a pixel that sees nothing: larger than any hit's
WALK = 32  # at most this many faces walked along a pixel segment to the silhouette
NEAR = 1e-3  # pinhole: vertices nearer than this fraction of the eye-target distance are "behind"


def load_mesh(path_or_trimesh):
    """A mesh file (anything trimesh reads) or a trimesh.Trimesh -> vertices (N, 3) float64 and
    faces (F, 3) int64 tensors."""
    import trimesh
    mesh = path_or_trimesh
    if isinstance(mesh, (str, Path)):
        mesh = trimesh.load(str(mesh), force="mesh")
    if not isinstance(mesh, trimesh.Trimesh):
        raise ValueError(f"path_or_trimesh must be a path or a trimesh.Trimesh, got {type(path_or_trimesh).__name__}")
    return (torch.as_tensor(np.asarray(mesh.vertices, np.float64)),
            torch.as_tensor(np.asarray(mesh.faces, np.int64)))


def _ray_basis(camera):
    """(V, 18): o0, ox, oy, d0, dx, dy with the ray of pixel (x, y) = (o0 + x ox + y oy,
    d0 + x dx + y dy), d not normalized: render/camera.Camera.rays() as an affine map."""
    with torch.no_grad():
        R = camera.rotation()
        V, zero = camera.V, torch.zeros(camera.V, 3, dtype=R.dtype)
        if camera.ortho is not None:
            s = camera.ortho / camera.height
            o0 = camera.eye + R @ torch.tensor([(0.5 - 0.5 * camera.width) * s, (0.5 * camera.height - 0.5) * s, 0.0],
                                               dtype=R.dtype)
            parts = [o0, R[:, :, 0] * s, -R[:, :, 1] * s, -R[:, :, 2], zero, zero]
        else:
            local = torch.stack([(0.5 - camera.cx) / camera.fx, (camera.cy - 0.5) / camera.fy,
                                 -torch.ones(V, dtype=R.dtype)], -1)
            parts = [camera.eye, zero, zero, (R @ local[..., None])[..., 0],
                     R[:, :, 0] / camera.fx[:, None], -R[:, :, 1] / camera.fy[:, None]]
        return torch.cat(parts, 1)


def _adjacency(faces):
    """For each face f and edge k = (f[k], f[k+1]): the other face sharing that edge, or -1 (a
    boundary, or an edge of more than two faces). (F, 3) int32."""
    a, b = faces, np.roll(faces, -1, axis=1)
    key = np.minimum(a, b).ravel() * (int(faces.max()) + 1) + np.maximum(a, b).ravel()
    order = np.argsort(key, kind="stable")
    same = key[order][1:] == key[order][:-1]
    two = same.copy()  # runs of exactly two equal keys: a manifold edge
    two[1:] &= ~same[:-1]
    two[:-1] &= ~same[1:]
    i = np.nonzero(two)[0]
    nbr = np.full(faces.size, -1, np.int64)
    nbr[order[i]], nbr[order[i + 1]] = order[i + 1] // 3, order[i] // 3
    return nbr.reshape(-1, 3).astype(np.int32)


@ti.data_oriented
class MeshScene:
    """The Taichi side of render_mesh: the mesh's faces with their edge adjacency, the per-pixel
    keys and per-(view, face) silhouette bits, grown (by half again at least) when a bigger
    mesh or image arrives. n_faces_max, n_pixels_max (views x height x width), n_views_max:
    sizes to allocate up front. Reuse one across calls: its kernel compiles once per size of
    its fields (about a second cold). free() releases them."""

    def __init__(self, n_faces_max=None, n_pixels_max=None, n_views_max=1):
        init()
        self.dtype = float_dtype()
        self._mesh_tree, self._view_tree = None, None
        self._F_cap, self._P_cap, self._VF_cap, self._faces = 0, 0, 0, None
        if n_faces_max:
            self._mesh_fields(int(n_faces_max))
        if n_faces_max or n_pixels_max:
            self._view_fields(int(n_pixels_max or 1), int(n_views_max) * int(n_faces_max or 1))

    # ------------------------------------------------------------ fields
    def _mesh_fields(self, F):
        if self._mesh_tree is not None:
            self._mesh_tree.destroy()
        fb = ti.FieldsBuilder()
        self.faces, self.nbr = ti.Vector.field(3, ti.i32), ti.Vector.field(3, ti.i32)
        fb.dense(ti.i, F).place(self.faces, self.nbr)
        self._mesh_tree, self._F_cap, self._faces = fb.finalize(), F, None

    def _view_fields(self, P, VF):
        """The per-pixel keys (P = views x pixels) and per-(view, face) silhouette bits."""
        if self._view_tree is not None:
            self._view_tree.destroy()
        fb = ti.FieldsBuilder()
        self.key, self.sil = ti.field(ti.i64), ti.field(ti.i32)
        fb.dense(ti.i, P).place(self.key)
        fb.dense(ti.i, VF).place(self.sil)
        self._view_tree, self._P_cap, self._VF_cap = fb.finalize(), P, VF

    def _set_mesh(self, faces):
        """Upload faces and their adjacency, unless this very mesh is already there."""
        if self._faces is not None and self._faces.shape == faces.shape and torch.equal(self._faces, faces):
            return
        F = len(faces)
        if F > self._F_cap:  # new fields mean a new compile: grow by half at least
            self._mesh_fields(max(F, self._F_cap * 3 // 2))
        f = faces.cpu().numpy()
        pad = lambda a: np.concatenate([a, np.zeros((self._F_cap - F, 3), np.int32)])  # from_numpy fills all
        self.faces.from_numpy(pad(f.astype(np.int32)))
        self.nbr.from_numpy(pad(_adjacency(f)))
        self._faces = faces.clone()

    def free(self):
        for tree in (self._mesh_tree, self._view_tree):
            if tree is not None:
                tree.destroy()
        self._mesh_tree, self._view_tree, self._faces = None, None, None
        self._F_cap, self._P_cap, self._VF_cap = 0, 0, 0

    # ------------------------------------------------------------ pass 1: visibility
    @ti.func
    def _vec(self, cam: ti.types.ndarray(), v, i):
        return ti.Vector([cam[v, i], cam[v, i + 1], cam[v, i + 2]], self.dtype)

    @ti.func
    def _px(self, pix: ti.types.ndarray(), v, i):
        return ti.Vector([pix[v, i, 0], pix[v, i, 1]], self.dtype)

    @ti.func
    def _cross(self, pix: ti.types.ndarray(), v, i, j, a: ti.template(), front, step, line):
        """Where the projected edge (i, j) crosses the pixel segment, as its fraction alpha from
        the front centre (-1e30 if it does not meet the segment's line). The segment runs along
        screen axis a from `front` by `step` (+-1 px), where the other axis equals `line`."""
        P0, P1 = self._px(pix, v, i), self._px(pix, v, j)
        c0, c1 = P0[1 - a] - line, P1[1 - a] - line
        alpha = -1e30
        if (c0 > 0) != (c1 > 0):
            s = c0 / (c0 - c1)  # the edge meets the line at P0 + s (P1 - P0)
            alpha = (P0[a] + s * (P1[a] - P0[a]) - front) * step
        return alpha

    @ti.func
    def _silhouettes(self, faces: ti.template(), nbr: ti.template(), pix: ti.types.ndarray(), v, ids, f, near):
        """Bit k set: edge k = (ids[k], ids[k+1]) of face f is a silhouette edge in view v: a
        boundary, or its other face skipped (behind the camera) or folded away (both third
        vertices on one side of the projected edge)."""
        bits = 0
        for k in ti.static(range(3)):
            n, sil = nbr[f][k], 1
            if n >= 0:
                i0, i1 = ids[k], ids[(k + 1) % 3]
                other = faces[n]
                opp = other[0] + other[1] + other[2] - i0 - i1  # its vertex off the shared edge
                if 0 <= opp < pix.shape[1] and pix[v, opp, 2] > near:  # (a degenerate face can miss)
                    P0 = self._px(pix, v, i0)
                    e = self._px(pix, v, i1) - P0
                    P2, Q = self._px(pix, v, ids[(k + 2) % 3]) - P0, self._px(pix, v, opp) - P0
                    if (e[0] * P2[1] - e[1] * P2[0]) * (e[0] * Q[1] - e[1] * Q[0]) < 0:
                        sil = 0
            bits |= sil << k
        return bits

    @ti.func
    def _silhouette_edge(self, faces: ti.template(), nbr: ti.template(), sil: ti.template(), pix: ti.types.ndarray(),
                         v, F, T, tq, a: ti.template(), front, step, line):
        """Walk from triangle T along the pixel segment through the mesh, across edges that are
        not silhouettes, to the silhouette edge (i, j) where the segment leaves the surface, or
        (-1, -1) if it reaches the other pixel's triangle tq first or ends inside the surface.
        (The walk matters where triangles are smaller than pixels and cover no centre.)"""
        i, j = -1, -1
        n = nbr[T]
        if sil[v * F + T] != 0 or (tq != n[0] and tq != n[1] and tq != n[2]):  # else a plain interior pair
            cur, prev, entry, done = T, -1, -1e30, 0
            for _ in range(WALK):
                if done == 0:
                    ids = faces[cur]
                    best, k = entry, -1
                    # the exit: the farthest crossing (a centre on an edge also crosses it, at 0)
                    for e in ti.static(range(3)):
                        if nbr[cur][e] != prev or prev < 0:
                            alpha = self._cross(pix, v, ids[e], ids[(e + 1) % 3], a, front, step, line)
                            if alpha <= 1 and alpha > best:
                                best, k = alpha, e
                    if k < 0:  # the segment ends inside this face
                        done = 1
                    elif (sil[v * F + cur] >> k) & 1 == 1:
                        i, j, done = ids[k], ids[(k + 1) % 3], 1
                    else:
                        nxt = nbr[cur][k]
                        if nxt == tq:  # one connected surface: nothing to blend
                            done = 1
                        else:
                            cur, prev, entry = nxt, cur, best
        return i, j

    @ti.kernel
    def _visibility(self, key: ti.template(), sil: ti.template(), faces: ti.template(), nbr: ti.template(),
                    verts: ti.types.ndarray(),
                    pix: ti.types.ndarray(), cam: ti.types.ndarray(), tri: ti.types.ndarray(),
                    edge: ti.types.ndarray(), F: ti.i32, H: ti.i32, W: ti.i32, near: ti.f64,
                    detect: ti.i32):
        V, HW = cam.shape[0], H * W
        for r in range(V * HW):
            key[r] = ti.i64(SENTINEL)
        # rasterize: parallel over (view, triangle); each walks its clamped pixel bounding box
        for v, f in ti.ndrange(V, F):
            ids = faces[f]
            behind = 0
            lo = ti.Vector([1e30, 1e30], self.dtype)
            hi = -lo
            for k in ti.static(range(3)):
                p = ti.Vector([pix[v, ids[k], 0], pix[v, ids[k], 1]], self.dtype)
                lo, hi = ti.min(lo, p), ti.max(hi, p)
                if pix[v, ids[k], 2] <= near:
                    behind = 1
            sil[v * F + f] = 0
            if behind == 0:
                sil[v * F + f] = self._silhouettes(faces, nbr, pix, v, ids, f, near)
                # pixel centres at i + 0.5 in [lo, hi]; a hair of margin, the exact test decides
                lo = ti.max(ti.min(lo - 0.5 - 1e-4, ti.Vector([W, H], self.dtype)), -1.0)
                hi = ti.max(ti.min(hi - 0.5 + 1e-4, ti.Vector([W, H], self.dtype)), -1.0)
                x0, y0 = ti.max(ti.cast(ti.ceil(lo[0]), ti.i32), 0), ti.max(ti.cast(ti.ceil(lo[1]), ti.i32), 0)
                x1 = ti.min(ti.cast(ti.floor(hi[0]), ti.i32), W - 1)
                y1 = ti.min(ti.cast(ti.floor(hi[1]), ti.i32), H - 1)
                A = ti.Vector([verts[ids[0], 0], verts[ids[0], 1], verts[ids[0], 2]], self.dtype)
                e1 = ti.Vector([verts[ids[1], 0], verts[ids[1], 1], verts[ids[1], 2]], self.dtype) - A
                e2 = ti.Vector([verts[ids[2], 0], verts[ids[2], 1], verts[ids[2], 2]], self.dtype) - A
                tiny = ti.static(1e-6 if self.dtype == ti.f32 else 1e-12) * e1.norm() * e2.norm()
                # the view's rays are affine in the pixel: origin and direction at (x, y) are
                # c0 + x cx + y cy for c = o, d (render/camera.py's rays before normalizing)
                o0, ox, oy = self._vec(cam, v, 0), self._vec(cam, v, 3), self._vec(cam, v, 6)
                d0, dx, dy = self._vec(cam, v, 9), self._vec(cam, v, 12), self._vec(cam, v, 15)
                for y in range(y0, y1 + 1):
                    for x in range(x0, x1 + 1):
                        o, d = o0 + x * ox + y * oy, d0 + x * dx + y * dy
                        # Moller-Trumbore; t is in units of |d|, the same for every triangle at
                        # this pixel, so it orders them as the distance does
                        p = d.cross(e2)
                        det = e1.dot(p)
                        if ti.abs(det) > tiny * d.norm():
                            s = o - A
                            u = s.dot(p) / det
                            q = s.cross(e1)
                            w = d.dot(q) / det
                            t = e2.dot(q) / det
                            if u >= 0 and w >= 0 and u + w <= 1 and t > 0:
                                bits = ti.bit_cast(ti.cast(t, ti.f32), ti.i32)
                                ti.atomic_min(key[v * HW + y * W + x],
                                              (ti.cast(bits, ti.i64) << 32) | ti.cast(f, ti.i64))
        # decode, and mark the pixel pairs to antialias: edge[r, axis] = (which pixel is in front:
        # 0 none, 1 this one, 2 its neighbour r + 1 or r + W; the silhouette edge's two vertices)
        for r in range(V * HW):
            kp = key[r]
            tp = -1
            if kp != ti.i64(SENTINEL):
                tp = ti.cast(kp - ((kp >> 32) << 32), ti.i32)
            tri[r] = tp
            v, y, x = r // HW, (r // W) % H, r % W
            for a in ti.static(range(2)):
                flag, i, j = 0, -1, -1
                dx, dy = ti.static(1 - a, a)  # the neighbour: right, then below
                if detect == 1 and x + dx < W and y + dy < H:
                    kq = key[r + dx + dy * W]
                    tq = -1
                    if kq != ti.i64(SENTINEL):
                        tq = ti.cast(kq - ((kq >> 32) << 32), ti.i32)
                    if tq != tp:
                        me = kp < kq  # is this pixel the nearer one?
                        T, back, flag = tp, tq, 1
                        if not me:
                            T, back, flag = tq, tp, 2
                        c = ti.Vector([x + 0.5, y + 0.5], self.dtype)
                        front = c[a] if me else c[a] + 1
                        i, j = self._silhouette_edge(faces, nbr, sil, pix, v, F, T, back, a, front, 1.0 if me else -1.0,
                                                     c[1 - a])
                        if i < 0:
                            flag = 0
                edge[r, a, 0], edge[r, a, 1], edge[r, a, 2] = flag, i, j

    @ti.kernel
    def _shade(self, faces: ti.template(), verts: ti.types.ndarray(), cols: ti.types.ndarray(),
               vn: ti.types.ndarray(), o: ti.types.ndarray(), d: ti.types.ndarray(), tri: ti.types.ndarray(),
               lights: ti.types.ndarray(), amb: ti.types.ndarray(), mat: ti.types.ndarray(),
               bg: ti.types.ndarray(), smooth: ti.template(), out: ti.types.ndarray()):
        """render_mesh's differentiable pass, forward only, as one kernel (no gradient asked):
        per pixel, the seen triangle's Moller-Trumbore distance and barycentrics, the
        interpolated colour, the flat or smooth normal toward the camera, Blinn-Phong;
        out: rgb, depth, normal, mask before antialiasing."""
        for p in range(tri.shape[0]):
            f = tri[p]
            rgb = ti.Vector([bg[0], bg[1], bg[2]], self.dtype)
            n = ti.Vector([0.0, 0.0, 0.0], self.dtype)
            t, m = ti.cast(0.0, self.dtype), ti.cast(0.0, self.dtype)
            if f >= 0:
                ids = faces[f]
                A = ti.Vector([verts[ids[0], 0], verts[ids[0], 1], verts[ids[0], 2]], self.dtype)
                e1 = ti.Vector([verts[ids[1], 0], verts[ids[1], 1], verts[ids[1], 2]], self.dtype) - A
                e2 = ti.Vector([verts[ids[2], 0], verts[ids[2], 1], verts[ids[2], 2]], self.dtype) - A
                ro = ti.Vector([o[p, 0], o[p, 1], o[p, 2]], self.dtype)
                rd = ti.Vector([d[p, 0], d[p, 1], d[p, 2]], self.dtype)
                pv = rd.cross(e2)
                inv = 1 / e1.dot(pv)
                sv = ro - A
                q = sv.cross(e1)
                t, u, w = e2.dot(q) * inv, sv.dot(pv) * inv, rd.dot(q) * inv
                c0 = ti.Vector([cols[ids[0], 0], cols[ids[0], 1], cols[ids[0], 2]], self.dtype)
                c1 = ti.Vector([cols[ids[1], 0], cols[ids[1], 1], cols[ids[1], 2]], self.dtype)
                c2 = ti.Vector([cols[ids[2], 0], cols[ids[2], 1], cols[ids[2], 2]], self.dtype)
                albedo = c0 + u * (c1 - c0) + w * (c2 - c0)
                nf = e1.cross(e2)
                facing = -1.0 if nf.dot(rd) > 0 else 1.0
                n = nf
                if ti.static(smooth):
                    n0 = ti.Vector([vn[ids[0], 0], vn[ids[0], 1], vn[ids[0], 2]], self.dtype)
                    n1 = ti.Vector([vn[ids[1], 0], vn[ids[1], 1], vn[ids[1], 2]], self.dtype)
                    n2 = ti.Vector([vn[ids[2], 0], vn[ids[2], 1], vn[ids[2], 2]], self.dtype)
                    n = n0 + u * (n1 - n0) + w * (n2 - n0)
                n = n * (facing / n.norm())
                x = ro + t * rd
                rgb = albedo * ti.Vector([amb[0], amb[1], amb[2]], self.dtype)
                for l in range(lights.shape[0]):
                    rgb += light_term(x, n, rd, albedo, mat[0], mat[1], lights, l)
                m = 1.0
            for a in ti.static(range(3)):
                out[p, a] = rgb[a]
                out[p, 4 + a] = n[a]
            out[p, 3] = t
            out[p, 7] = m

    def visibility(self, camera, vertices, faces, px, z, antialias=True):
        """Per-pixel triangle ids (V*H*W,) int32 (-1: background) and antialiasing marks
        (V*H*W, 2, 3) int32 (see the kernel) of camera's views of the mesh; px, z from
        camera.project. No tape."""
        self._set_mesh(faces)
        P = camera.V * camera.height * camera.width
        VF = camera.V * len(faces)
        if P > self._P_cap or VF > self._VF_cap:  # new fields mean a new compile: grow by half at least
            self._view_fields(max(P, self._P_cap * 3 // 2), max(VF, self._VF_cap * 3 // 2))
        cam = _ray_basis(camera).to(torch.float64).contiguous()
        pix = torch.cat([px, z[..., None]], -1).to(torch.float64).contiguous()
        if camera.ortho is not None:
            near = -1e300  # orthographic rays start on the eye's plane; t > 0 does the rest
        else:
            near = NEAR * float((camera.eye - camera.target).norm(dim=-1).min())
        tri = torch.empty(P, dtype=torch.int32)
        edge = torch.empty(P, 2, 3, dtype=torch.int32)
        verts = vertices.detach().to(torch.float64).contiguous()
        self._visibility(self.key, self.sil, self.faces, self.nbr, verts, pix, cam,
                         tri, edge, len(faces), camera.height, camera.width, near, int(bool(antialias)))
        return tri, edge


# ---------------------------------------------------------------- checks
def _check(camera, vertices, faces, colors, light, specular, shininess, background):
    if not isinstance(camera, Camera):
        raise ValueError(f"camera must be a render/camera.Camera, got {type(camera).__name__}")
    dtype = camera.eye.dtype
    vertices = torch.as_tensor(vertices)
    if not vertices.is_floating_point() or vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) < 3:
        raise ValueError(f"vertices must be a float (N, 3) tensor with N >= 3, got {tuple(vertices.shape)} "
                         f"{vertices.dtype}")
    if not torch.isfinite(vertices).all():
        raise ValueError("vertices must be finite")
    faces = torch.as_tensor(faces)
    if faces.is_floating_point() or faces.is_complex() or faces.dtype == torch.bool or faces.ndim != 2 \
            or faces.shape[1] != 3 or len(faces) == 0:
        raise ValueError(f"faces must be an integer (F, 3) tensor with F >= 1, got {tuple(faces.shape)} {faces.dtype}")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"faces must index vertices in [0, {len(vertices)}), "
                         f"got [{int(faces.min())}, {int(faces.max())}]")
    colors = torch.as_tensor(colors, dtype=dtype)
    if colors.shape == (3,):
        colors = colors.expand(len(vertices), 3)
    if colors.shape != vertices.shape:
        raise ValueError(f"colors must be (N, 3) = {tuple(vertices.shape)} (or one RGB), got {tuple(colors.shape)}")
    if not torch.isfinite(colors).all():
        raise ValueError("colors must be finite")
    if not isinstance(light, dict) or set(light) != set(KINDS):
        raise ValueError("light must be a render/shading.lights(...) dict")
    specular, shininess = torch.as_tensor(specular, dtype=dtype), torch.as_tensor(shininess, dtype=dtype)
    for name, val in (("specular", specular), ("shininess", shininess)):
        if val.numel() != 1 or not torch.isfinite(val).all():
            raise ValueError(f"{name} must be one finite number, got {val}")
    background = torch.as_tensor(background, dtype=dtype)
    if background.shape != (3,) or not torch.isfinite(background).all():
        raise ValueError(f"background must be one finite RGB, got {background}")
    return vertices.to(dtype), faces.to(torch.int64), colors, specular.reshape(()), shininess.reshape(()), background


# ---------------------------------------------------------------- pass 2: torch
def _dot(a, b):
    """Row-wise dot products of (M, 3) tensors, (M,): a matrix-vector product, several times
    faster on the CPU than a sum over a last axis of 3."""
    return (a * b) @ torch.ones(3, dtype=a.dtype)


def _surface(o, d, A, B, C):
    """Moller-Trumbore in torch: distance t and barycentrics (u, w) of rays (M, 3) on the
    triangles (A, B, C) (each (M, 3)); also the triangles' edges."""
    e1, e2 = B - A, C - A
    p = torch.linalg.cross(d, e2)
    inv = 1 / _dot(e1, p)
    s = o - A
    q = torch.linalg.cross(s, e1)
    return _dot(e2, q) * inv, _dot(s, p) * inv, _dot(d, q) * inv, e1, e2


def _lerp(c, u, w):
    """Barycentric interpolation of per-corner values c (M, 3, C) at (1 - u - w, u, w)."""
    c0 = c[:, 0]
    return c0 + u[:, None] * (c[:, 1] - c0) + w[:, None] * (c[:, 2] - c0)


def _normals(vertices, faces, fi, u, w, e1, e2, d, smooth):
    """Unit normals at the hits, toward the camera: the face's, or its vertex normals
    (area-weighted) interpolated. fi: the hit triangles' vertex ids (M, 3)."""
    n_face = torch.linalg.cross(e1, e2)
    facing = torch.where(_dot(n_face, d) > 0, -1.0, 1.0).to(d.dtype)[:, None]  # not differentiated
    if not smooth:
        return n_face * (facing / n_face.norm(dim=-1, keepdim=True))
    n = _lerp(_vertex_normals(vertices, faces)[fi], u, w)
    return n * (facing / n.norm(dim=-1, keepdim=True))


def _vertex_normals(vertices, faces):
    """Unit area-weighted vertex normals (N, 3)."""
    T = vertices[faces]
    area_n = torch.linalg.cross(T[:, 1] - T[:, 0], T[:, 2] - T[:, 0])
    vn = torch.zeros_like(vertices).index_add(0, faces.reshape(-1), area_n.repeat_interleave(3, 0))
    return vn / vn.norm(dim=-1, keepdim=True).clamp(min=1e-30)


def _antialias(camera, vertices, edge, images):
    """Blend pixel pairs across silhouette edges (nvdiffrast): alpha, where the edge crosses the
    segment from the front pixel's centre to its neighbour's, through camera.project, so it is
    differentiable in the vertices and the camera. images: (P, C) tensors to blend alike."""
    W, HW = camera.width, camera.width * camera.height
    r, axis = (edge[..., 0] > 0).nonzero(as_tuple=True)
    if len(r) == 0:
        return images
    me = edge[r, axis, 0] == 1
    q = r + torch.where(axis == 0, 1, W)
    front, other, view = torch.where(me, r, q), torch.where(me, q, r), r // HW
    ends = edge[r, axis, 1:].long().T.reshape(-1)  # all first vertices, then all second ones
    px, _ = camera.project(vertices[ends][None])  # (V, 2K, 2)
    px = px[view.repeat(2), torch.arange(len(ends))]
    P0, P1 = px.chunk(2)
    centre = torch.stack([front % W, (front // W) % camera.height], -1).to(px.dtype) + 0.5
    a, b = axis[:, None], 1 - axis[:, None]
    g = lambda t, i: t.gather(1, i).squeeze(1)
    s = (g(centre, b) - g(P0, b)) / (g(P1, b) - g(P0, b))
    step = torch.where(me, 1.0, -1.0).to(px.dtype)
    alpha = ((g(P0, a) + s * (g(P1, a) - g(P0, a)) - g(centre, a)) * step).clamp(0, 1)
    w_other, w_front = (alpha - 0.5).clamp(min=0)[:, None], (0.5 - alpha).clamp(min=0)[:, None]
    out = []
    for img in images:
        delta = img[front] - img[other]
        out.append(img.index_add(0, other, w_other * delta).index_add(0, front, -w_front * delta))
    return out


_SHARED = []


def _shared_scene():
    if not _SHARED:
        _SHARED.append(MeshScene())
    return _SHARED[0]


def render_mesh(camera, vertices, faces, colors, light, specular=0.0, shininess=16.0, background=(0.0, 0.0, 0.0),
                antialias=True, smooth=False, scene=None):
    """Render a triangle mesh in camera's V views: a dict of rgb (V, H, W, 3), depth (V, H, W;
    distance along the ray, 0 for background), normal (V, H, W, 3; toward the camera, 0 for
    background), mask (V, H, W; coverage, soft at silhouettes when antialias), tri (V, H, W
    int64; the triangle seen, -1 for background).

    camera: render/camera.Camera; vertices (N, 3), faces (F, 3) integer, colors (N, 3) per
    vertex (or one RGB); light: render/shading.lights(...); specular, shininess: one number
    each (tensors allowed); smooth: interpolated vertex normals instead of flat ones.
    scene: a MeshScene to hold the Taichi buffers; the default is one shared by every call
    that passes none (its kernel compiles once per size it grows to).
    Gradients reach vertices, colors, light, specular, shininess and the camera's tensors.
    """
    vertices, faces, colors, specular, shininess, bg = _check(camera, vertices, faces, colors, light, specular,
                                                               shininess, background)
    scene = _shared_scene() if scene is None else scene
    V, H, W = camera.V, camera.height, camera.width
    with torch.no_grad():
        px, z = camera.project(vertices.detach()[None])
        tri, edge = scene.visibility(camera, vertices, faces, px, z, antialias)
    o, d = (x.reshape(-1, 3) for x in camera.rays())
    tensors = [vertices, colors, specular, shininess, bg, camera.eye, camera.target, *light.values()]
    tensors += [a for a in (camera.fx, camera.fy, camera.cx, camera.cy) if a is not None]
    if not (torch.is_grad_enabled() and any(a.requires_grad for a in tensors)):
        return _fused(scene, camera, vertices, faces, colors, light, specular, shininess, bg, antialias, smooth,
                      o, d, tri, edge)
    idx = (tri >= 0).nonzero().squeeze(1)
    fi = faces[tri[idx].long()]
    o, d = o[idx], d[idx]
    corners = torch.cat([vertices, colors], 1)[fi]  # one gather for positions and colours
    t, u, w, e1, e2 = _surface(o, d, corners[:, 0, :3], corners[:, 1, :3], corners[:, 2, :3])
    albedo = _lerp(corners[..., 3:], u, w)
    n = _normals(vertices, faces, fi, u, w, e1, e2, d, smooth)
    x = o + t[:, None] * d
    M = len(idx)
    shade = blinn_phong(x, n, d, albedo, specular.expand(M), shininess.expand(M), light)
    P = V * H * W
    rgb = bg.expand(P, 3).index_put((idx,), shade)
    mask = torch.zeros(P, 1, dtype=d.dtype).index_put((idx,), torch.ones(M, 1, dtype=d.dtype))
    if antialias:
        rgb, mask = _antialias(camera, vertices, edge, [rgb, mask])
        mask = mask.clamp(0, 1)  # a pixel between two front neighbours could collect more
    zeros = torch.zeros(P, dtype=d.dtype)
    return dict(rgb=rgb.reshape(V, H, W, 3), depth=zeros.index_put((idx,), t).reshape(V, H, W),
                normal=torch.zeros(P, 3, dtype=d.dtype).index_put((idx,), n).reshape(V, H, W, 3),
                mask=mask.reshape(V, H, W), tri=tri.long().reshape(V, H, W))


def _fused(scene, camera, vertices, faces, colors, light, specular, shininess, bg, antialias, smooth, o, d, tri,
           edge):
    """render_mesh without gradients: its shading pass as one Taichi kernel (the same values)."""
    ft = torch.float64 if scene.dtype == ti.f64 else torch.float32
    V, H, W, P = camera.V, camera.height, camera.width, len(tri)
    conv = lambda a: a.detach().to(ft).contiguous()
    vn = conv(_vertex_normals(vertices, faces)) if smooth else torch.zeros(1, 3, dtype=ft)
    table, amb = kernel_lights(light, o.device, ft)
    out = torch.empty(P, 8, dtype=ft)
    scene._shade(scene.faces, conv(vertices), conv(colors), vn, conv(o), conv(d), tri.contiguous(), table, amb,
                 conv(torch.stack([specular, shininess])), conv(bg), bool(smooth), out)
    out = out.to(o.dtype)
    rgb, mask = out[:, :3], out[:, 7:8]
    if antialias:
        rgb, mask = _antialias(camera, vertices.detach(), edge, [rgb, mask])
        mask = mask.clamp(0, 1)
    return dict(rgb=rgb.reshape(V, H, W, 3), depth=out[:, 3].reshape(V, H, W), normal=out[:, 4:7].reshape(V, H, W, 3),
                mask=mask.reshape(V, H, W), tri=tri.long().reshape(V, H, W))
