"""Differentiable ray tracing of many spheres (the particles of MPM and mass-spring), with
hard shadows (DESIGN section 6).

Two passes, as Pulsar does:
1. visibility without a tape (Taichi, on the tensors' device, no copies on the CPU):
   - each sphere is projected to its exact screen bounding box (tangent planes through the
     eye) and every pixel of that box tests its own ray against the sphere: the pixels are
     the primary rays' acceleration structure, so a pixel only meets the spheres that can
     touch it. Pass (a) finds each pixel's nearest fully covering hit (a float atomic
     min on its depth), pass (b) lists the spheres in front of it that cover the
     pixel partly (the soft band), pass (c) sorts that list by depth, cuts it at the first
     full cover and casts the shadow rays;
   - shadow rays traverse a uniform world grid built on the device each frame (counting
     sort: count, cumsum, fill) with a 3D DDA, any-hit, skipping the sphere they start on.
2. a differentiable pass over those records (K nearest spheres per pixel), one Taichi kernel
   forward and one written-out reverse (a torch autograd Function; a plain torch version of
   the same pass serves gradients to the focal length fy, and the tests as a reference):
   - coverage c = smoothstep((r - d) / w) of the ray's distance d to a centre, w = `band`
     pixels' width at the sphere's depth: 1 inside, 0 outside, smooth across the rim, so
     silhouettes carry gradients to centres and radii;
   - front-to-back compositing of the sorted candidates: weight c_k prod_{j<k} (1 - c_j),
     the background taking what remains;
   - the hit point and normal by the ray-sphere closest form; in the band outside the rim
     the normal is that of the rim point nearest the ray; Lambert + Blinn-Phong shading.
Not differentiated: which spheres a pixel lists, their order, and shadows (hard, 0 or 1).
Spheres that reach behind a pinhole camera's eye plane are not drawn.
"""
import taichi as ti
import torch

from ..sims import float_dtype, init
from .shading import blinn_phong, kernel_lights, light_table, light_term

KMAX = 16  # candidates a pixel can list: beyond that the farthest partial covers are lost


def _torch_dtype():
    return torch.float64 if float_dtype() == ti.f64 else torch.float32


@ti.func
def _smoothstep(u):
    s = ti.min(ti.max(0.5 * (u + 1.0), 0.0), 1.0)
    return s * s * (3.0 - 2.0 * s)


@ti.data_oriented
class SphereTracer:
    """The visibility pass and the shadow grid; `render` below is the whole renderer.
    Holds no fields: its buffers are torch tensors on the caller's device, passed to the
    kernels as ndarrays, so one tracer serves any number of spheres, pixels and views."""

    def __init__(self):
        init()
        self.dtype = float_dtype()

    @ti.func
    def _band(self, cam: ti.template(), v, tc):
        """The band's world width at distance tc: `band` pixels (cam[v, 16] > 0: orthographic)."""
        w = cam[v, 18] * tc / cam[v, 13]
        if cam[v, 16] > 0:
            w = cam[v, 18] * cam[v, 16] / cam[v, 17]
        return w

    @ti.func
    def _footprint(self, cam: ti.template(), v, c, r, H, W):
        """Pixel box [x0, x1) x [y0, y1) of sphere (c, r) plus its band in view v; empty if it
        reaches behind a pinhole's eye plane."""
        eye = ti.Vector([cam[v, 0], cam[v, 1], cam[v, 2]])
        R = ti.Matrix([[cam[v, 3 + 3 * i + j] for j in ti.static(range(3))] for i in ti.static(range(3))])
        p = R.transpose() @ (c - eye)
        z = -p[2]
        x0, x1, y0, y1 = 0.0, 0.0, 0.0, 0.0
        if cam[v, 16] > 0:  # orthographic: a disk of radius (r + band) in pixels
            s = cam[v, 17] / cam[v, 16]
            rad = (r + cam[v, 18] * cam[v, 16] / cam[v, 17]) * s
            u, vv = 0.5 * W + p[0] * s, 0.5 * H - p[1] * s
            x0, x1 = ti.floor(u - rad - 0.5), ti.floor(u + rad - 0.5) + 2
            y0, y1 = ti.floor(vv - rad - 0.5), ti.floor(vv + rad - 0.5) + 2
            if z + r <= 0:
                x1 = x0
        else:
            Rb = r + cam[v, 18] * (p.norm() + r) / cam[v, 13]  # the band at the sphere's far side
            if z > Rb * 1.001:
                den = z * z - Rb * Rb
                sx = Rb * ti.sqrt(ti.max(p[0] * p[0] + den, 0.0))
                sy = Rb * ti.sqrt(ti.max(p[1] * p[1] + den, 0.0))
                ux0, ux1 = (p[0] * z - sx) / den, (p[0] * z + sx) / den
                uy0, uy1 = (p[1] * z - sy) / den, (p[1] * z + sy) / den
                x0, x1 = ti.floor(cam[v, 14] + cam[v, 12] * ux0 - 0.5), ti.floor(cam[v, 14] + cam[v, 12] * ux1 - 0.5) + 2
                y0, y1 = ti.floor(cam[v, 15] - cam[v, 13] * uy1 - 0.5), ti.floor(cam[v, 15] - cam[v, 13] * uy0 - 0.5) + 2
        return (ti.cast(ti.max(x0, 0), ti.i32), ti.cast(ti.min(x1, W), ti.i32),
                ti.cast(ti.max(y0, 0), ti.i32), ti.cast(ti.min(y1, H), ti.i32))

    # ------------------------------------------------------------ pass 1: visibility
    @ti.kernel
    def _splat(self, second: ti.template(), cam: ti.types.ndarray(), o: ti.types.ndarray(), d: ti.types.ndarray(),
               c: ti.types.ndarray(), r: ti.types.ndarray(), front: ti.types.ndarray(),
               count: ti.types.ndarray(), lists: ti.types.ndarray()):
        """(a) second=False: each pixel's nearest full cover into `front`; (b) second=True:
        the spheres that cover a pixel in front of that (and itself) into `lists`."""
        V, H, W, M = o.shape[0], o.shape[1], o.shape[2], c.shape[0]
        for v, i in ti.ndrange(V, M):
            ci = ti.Vector([c[i, 0], c[i, 1], c[i, 2]], self.dtype)
            ri = ti.cast(r[i], self.dtype)
            x0, x1, y0, y1 = self._footprint(cam, v, ci, ri, H, W)
            for py in range(y0, y1):  # (two loops: an ndrange would divide to find each pixel)
                for px in range(x0, x1):
                    ro = ti.Vector([o[v, py, px, 0], o[v, py, px, 1], o[v, py, px, 2]], self.dtype)
                    rd = ti.Vector([d[v, py, px, 0], d[v, py, px, 1], d[v, py, px, 2]], self.dtype)
                    oc = ci - ro
                    tc = oc.dot(rd)
                    if tc > 0 and tc - ri < front[v, py, px]:  # not behind what covers the pixel already
                        w = self._band(cam, v, tc)
                        d2 = oc.dot(oc) - tc * tc
                        if ti.static(not second):  # full cover: distance <= r - w
                            if ri > w and d2 <= (ri - w) * (ri - w):
                                t = tc - ti.sqrt(ri * ri - d2)
                                if t > 0:
                                    ti.atomic_min(front[v, py, px], t)
                        elif d2 < (ri + w) * (ri + w):
                            t = tc
                            if d2 < ri * ri:
                                t = tc - ti.sqrt(ri * ri - d2)
                            # (the slack keeps the front sphere itself under any rounding)
                            if t > 0 and t <= front[v, py, px] * (1 + 1e-6):
                                n = ti.atomic_add(count[v, py, px], 1)
                                if n < KMAX:
                                    lists[v, py, px, n] = i

    @ti.kernel
    def _resolve(self, cam: ti.types.ndarray(), o: ti.types.ndarray(), d: ti.types.ndarray(),
                 c: ti.types.ndarray(), r: ti.types.ndarray(), count: ti.types.ndarray(),
                 lists: ti.types.ndarray(), order: ti.types.ndarray(), lights: ti.types.ndarray(),
                 shadows: ti.template(),
                 meta: ti.types.ndarray(), start: ti.types.ndarray(), items: ti.types.ndarray(),
                 kept: ti.types.ndarray(), vis: ti.types.ndarray()):
        """Sort each pixel's list by depth, cut it after the first full cover, cast shadows.
        The splats list spheres by their rank in `order`; the list keeps their own ids."""
        V, H, W, L = o.shape[0], o.shape[1], o.shape[2], lights.shape[0]
        for v, py, px in ti.ndrange(V, H, W):
            n = ti.min(count[v, py, px], KMAX)
            ro = ti.Vector([o[v, py, px, 0], o[v, py, px, 1], o[v, py, px, 2]], self.dtype)
            rd = ti.Vector([d[v, py, px, 0], d[v, py, px, 1], d[v, py, px, 2]], self.dtype)
            ids = ti.Vector([-1] * KMAX, ti.i32)
            ts = ti.Vector([0.0] * KMAX, self.dtype)
            for k in range(n):  # insertion sort, nearest first
                i = order[lists[v, py, px, k]]
                _c, t, _n, _x = self._layer(cam, v, ro, rd, c, r, i)
                j = k
                while j > 0 and (ts[j - 1] > t or (ts[j - 1] == t and ids[j - 1] > i)):
                    ts[j], ids[j] = ts[j - 1], ids[j - 1]
                    j -= 1
                ts[j], ids[j] = t, i
            m = 0
            for k in range(n):
                if m == k:  # not yet cut
                    i = ids[k]
                    cov, _t, _n, x = self._layer(cam, v, ro, rd, c, r, i)  # x: the hit, or the rim point nearest the ray
                    lists[v, py, px, k] = i
                    if ti.static(shadows):
                        for l in range(L):
                            vis[v, py, px, k, l] = 1 - self._blocked(x, lights, l, i, ti.cast(r[i], self.dtype), c, r,
                                                                    meta, start, items)
                    m = k + 1
                    if cov >= 1.0:
                        m = -1 - m  # cut: nothing behind a full cover shows
            kept[v, py, px] = m if m >= 0 else -1 - m

    @ti.kernel
    def _composite(self, cam: ti.types.ndarray(), o: ti.types.ndarray(), d: ti.types.ndarray(),
                   c: ti.types.ndarray(), r: ti.types.ndarray(), mat: ti.types.ndarray(), lists: ti.types.ndarray(),
                   kept: ti.types.ndarray(), vis: ti.types.ndarray(), lights: ti.types.ndarray(),
                   ambient: ti.types.ndarray(), bg: ti.types.ndarray(), shadows: ti.template(),
                   out: ti.types.ndarray()):
        """render()'s differentiable pass, forward only, fused: the same coverage, compositing
        and Blinn-Phong per pixel (mat: albedo, specular, shininess per sphere; out: rgb,
        depth, normal, mask)."""
        for v, py, px in ti.ndrange(o.shape[0], o.shape[1], o.shape[2]):  # (nothing outside it: autodiff)
            ro = ti.Vector([o[v, py, px, 0], o[v, py, px, 1], o[v, py, px, 2]], self.dtype)
            rd = ti.Vector([d[v, py, px, 0], d[v, py, px, 1], d[v, py, px, 2]], self.dtype)
            amb = ti.Vector([ambient[0], ambient[1], ambient[2]], self.dtype)
            T, dep = ti.cast(1.0, self.dtype), ti.cast(0.0, self.dtype)
            acc, nor = ti.Vector([0.0, 0.0, 0.0], self.dtype), ti.Vector([0.0, 0.0, 0.0], self.dtype)
            for k in range(kept[v, py, px]):
                i = lists[v, py, px, k]
                cover, t, n, x = self._layer(cam, v, ro, rd, c, r, i)
                albedo = ti.Vector([mat[i, 0], mat[i, 1], mat[i, 2]], self.dtype)
                shade = albedo * amb
                for l in range(lights.shape[0]):
                    term = light_term(x, n, rd, albedo, mat[i, 3], mat[i, 4], lights, l)
                    if ti.static(shadows):
                        term *= vis[v, py, px, k, l]
                    shade += term
                wk = cover * T
                acc += wk * shade
                dep += wk * t
                nor += wk * n
                T *= 1 - cover
            mask = 1 - T
            rgb = acc + T * ti.Vector([bg[v, py, px, 0], bg[v, py, px, 1], bg[v, py, px, 2]], self.dtype)
            safe = mask if mask > 0 else 1.0
            for a in ti.static(range(3)):
                out[v, py, px, a] = rgb[a]
                out[v, py, px, 4 + a] = nor[a] / safe
            out[v, py, px, 3] = dep / safe
            out[v, py, px, 7] = mask

    @ti.func
    def _v3(self, a: ti.template(), i):
        return ti.Vector([a[i, 0], a[i, 1], a[i, 2]], self.dtype)

    @ti.func
    def _p3(self, a: ti.template(), v, py, px):
        return ti.Vector([a[v, py, px, 0], a[v, py, px, 1], a[v, py, px, 2]], self.dtype)

    @ti.kernel
    def _composite_reverse(self, cam: ti.types.ndarray(), o: ti.types.ndarray(), d: ti.types.ndarray(),
                           c: ti.types.ndarray(), r: ti.types.ndarray(), mat: ti.types.ndarray(),
                           lists: ti.types.ndarray(), kept: ti.types.ndarray(), vis: ti.types.ndarray(),
                           lights: ti.types.ndarray(), ambient: ti.types.ndarray(), bg: ti.types.ndarray(),
                           shadows: ti.template(), g_out: ti.types.ndarray(), go: ti.types.ndarray(),
                           gd: ti.types.ndarray(), gc: ti.types.ndarray(), gr: ti.types.ndarray(),
                           gmat: ti.types.ndarray(), glights: ti.types.ndarray(), gamb: ti.types.ndarray(),
                           gbg: ti.types.ndarray()):
        """The reverse of _composite, written out: per pixel, the forward's transmittances,
        then the layers back to front (a_k: what lies behind layer k, weighted as seen through
        it: d out / d cover_k = T_k (g_k - a_k), no division by 1 - cover), each layer's
        shading and ray-sphere geometry reversed into the inputs' gradients."""
        for v, py, px in ti.ndrange(o.shape[0], o.shape[1], o.shape[2]):
            ro, rd = self._p3(o, v, py, px), self._p3(d, v, py, px)
            amb = ti.Vector([ambient[0], ambient[1], ambient[2]], self.dtype)
            n_k = kept[v, py, px]
            Ts = ti.Vector([0.0] * KMAX, self.dtype)
            T, dep = ti.cast(1.0, self.dtype), ti.cast(0.0, self.dtype)
            nor = ti.Vector([0.0, 0.0, 0.0], self.dtype)
            for k in range(n_k):  # forward again: transmittances, depth and normal sums
                cover, t, nrm, _x = self._layer(cam, v, ro, rd, c, r, lists[v, py, px, k])
                Ts[k] = T
                dep += cover * T * t
                nor += cover * T * nrm
                T *= 1 - cover
            g_rgb = self._p3(g_out, v, py, px)
            g_nor = ti.Vector([g_out[v, py, px, 4], g_out[v, py, px, 5], g_out[v, py, px, 6]], self.dtype)
            g_dep, g_mask = g_out[v, py, px, 3], g_out[v, py, px, 7]
            mask = 1 - T
            g_D, g_N = g_dep, g_nor
            if mask > 0:  # depth = D / mask, normal = N / mask
                g_D, g_N = g_dep / mask, g_nor / mask
                g_mask -= (g_dep * dep + g_nor.dot(nor)) / (mask * mask)
            bgc = self._p3(bg, v, py, px)
            for a in ti.static(range(3)):
                gbg[v, py, px, a] = T * g_rgb[a]
            acc = g_rgb.dot(bgc) - g_mask  # d out / d T_K: then what lies behind each layer
            g_ro, g_rd = ti.Vector([0.0, 0.0, 0.0], self.dtype), ti.Vector([0.0, 0.0, 0.0], self.dtype)
            for kk in range(n_k):
                k = n_k - 1 - kk
                i = lists[v, py, px, k]
                ci, ri = self._v3(c, i), ti.cast(r[i], self.dtype)
                cover, t, nrm, x = self._layer(cam, v, ro, rd, c, r, i)
                wk = cover * Ts[k]
                shade, g_alb, g_S, g_sh, g_x, g_n, g_rd_s = self._shade_reverse(
                    v, py, px, k, i, x, nrm, rd, self._v3(mat, i), mat, lights, amb, vis, shadows, wk * g_rgb,
                    glights, gamb)
                g_w = g_rgb.dot(shade) + g_D * t + g_N.dot(nrm)
                g_cover = Ts[k] * (g_w - acc)
                acc = g_w * cover + (1 - cover) * acc
                for a in ti.static(range(3)):
                    ti.atomic_add(gmat[i, a], g_alb[a])
                ti.atomic_add(gmat[i, 3], g_S)
                ti.atomic_add(gmat[i, 4], g_sh)
                g_t = wk * g_D
                g_n += wk * g_N
                g_ci, g_ri, g_ro_k, g_rd_k = self._layer_reverse(cam, v, ro, rd, ci, ri, g_cover, g_t, g_n, g_x)
                g_ro += g_ro_k
                g_rd += g_rd_k + g_rd_s
                for a in ti.static(range(3)):
                    ti.atomic_add(gc[i, a], g_ci[a])
                ti.atomic_add(gr[i], g_ri)
            for a in ti.static(range(3)):
                go[v, py, px, a] = g_ro[a]
                gd[v, py, px, a] = g_rd[a]

    @ti.func
    def _layer(self, cam: ti.template(), v, ro, rd, c: ti.template(), r: ti.template(), i):
        """One sphere's coverage of the ray, its sort depth (the hit distance inside the rim, the
        closest approach's outside it), and the normal and point there (on the rim outside)."""
        ci, ri = self._v3(c, i), ti.cast(r[i], self.dtype)
        oc = ci - ro
        tc = oc.dot(rd)
        d2 = ti.max(oc.dot(oc) - tc * tc, 0.0)
        dist = ti.cast(0.0, self.dtype)
        if d2 > 0:  # (the reverse of sqrt at 0 would be inf)
            dist = ti.sqrt(d2)
        cover = _smoothstep((ri - dist) / self._band(cam, v, tc))
        t = tc
        if ri * ri - d2 > 0:
            t = tc - ti.sqrt(ri * ri - d2)
        p = ro + t * rd - ci
        n = p / ti.max(p.norm(), 1e-30)
        return cover, t, n, ci + ri * n

    @ti.func
    def _layer_reverse(self, cam: ti.template(), v, ro, rd, ci, ri, g_cover, g_t, g_n, g_x):
        """The reverse of _layer: gradients to the centre, radius, ray origin and direction."""
        oc = ci - ro
        tc = oc.dot(rd)
        raw = oc.dot(oc) - tc * tc
        d2 = ti.max(raw, 0.0)
        dist = ti.cast(0.0, self.dtype)
        if d2 > 0:
            dist = ti.sqrt(d2)
        w = self._band(cam, v, tc)
        u = (ri - dist) / w
        q = ri * ri - d2
        t = tc
        if q > 0:
            t = tc - ti.sqrt(q)
        p = ro + t * rd - ci
        pn = p.norm()
        n = p / ti.max(pn, 1e-30)
        # x = ci + ri n
        g_ci, g_ri = g_x, g_x.dot(n)
        g_n2 = g_n + ri * g_x
        g_p = ti.Vector([0.0, 0.0, 0.0], self.dtype)
        if pn > 1e-30:
            g_p = (g_n2 - n * n.dot(g_n2)) / pn
        # p = ro + t rd - ci
        g_ro, g_rd = g_p, t * g_p
        g_t2 = g_t + g_p.dot(rd)
        g_ci -= g_p
        g_tc, g_d2 = g_t2, ti.cast(0.0, self.dtype)
        if q > 0:  # t = tc - sqrt(ri^2 - d2)
            g_q = -g_t2 / (2 * ti.sqrt(q))
            g_ri += 2 * ri * g_q
            g_d2 -= g_q
        # cover = smoothstep((ri - dist) / w)
        s = 0.5 * (u + 1)
        if s > 0 and s < 1:
            g_u = g_cover * 3 * s * (1 - s)  # d/du of s^2 (3 - 2 s) with ds/du = 1/2
            g_ri += g_u / w
            if d2 > 0:
                g_d2 += -g_u / w / (2 * dist)
            if cam[v, 16] <= 0:  # pinhole: w = band tc / fy
                g_tc += -g_u * u / w * (cam[v, 18] / cam[v, 13])
        g_oc = ti.Vector([0.0, 0.0, 0.0], self.dtype)
        if raw > 0:  # d2 = oc.oc - tc^2
            g_oc += 2 * oc * g_d2
            g_tc += -2 * tc * g_d2
        g_oc += g_tc * rd  # tc = oc . rd
        g_rd += g_tc * oc
        return g_ci + g_oc, g_ri, g_ro - g_oc, g_rd

    @ti.func
    def _shade_reverse(self, v, py, px, k, i, x, n, rd, albedo, mat: ti.template(), lights: ti.template(), amb,
                       vis: ti.template(), shadows: ti.template(), g_s, glights: ti.template(), gamb: ti.template()):
        """Blinn-Phong at x (the forward's shade) and, for the incoming gradient g_s, its
        reverse: to albedo, specular, shininess, the point, the normal and the ray direction,
        and into the lights' and the ambient's gradients."""
        shade = albedo * amb
        g_alb = g_s * amb
        g_S, g_sh = ti.cast(0.0, self.dtype), ti.cast(0.0, self.dtype)
        g_x, g_n, g_rd = ti.Vector([0.0] * 3, self.dtype), ti.Vector([0.0] * 3, self.dtype), ti.Vector([0.0] * 3, self.dtype)
        for a in ti.static(range(3)):
            ti.atomic_add(gamb[a], g_s[a] * albedo[a])
        for l in range(lights.shape[0]):
            P = ti.Vector([lights[l, 1], lights[l, 2], lights[l, 3]], self.dtype)
            col = ti.Vector([lights[l, 4], lights[l, 5], lights[l, 6]], self.dtype)
            vk = ti.cast(1.0, self.dtype)
            if ti.static(shadows):
                vk = ti.cast(vis[v, py, px, k, l], self.dtype)
            point = lights[l, 0] > 1.5
            Lraw = -P
            if point:
                Lraw = P - x
            ln = Lraw.norm()
            L = Lraw / ln
            fall = ti.cast(1.0, self.dtype)
            if point:
                fall = 1 / (ln * ln)
            cl = col * vk * fall  # the light's colour here
            nl = n.dot(L)
            lam = ti.max(nl, 0.0)
            hl = L - rd
            hn = hl.norm()
            hv = hl / hn
            nh = n.dot(hv)
            spec = ti.cast(0.0, self.dtype)
            pw = ti.cast(0.0, self.dtype)
            if lam > 0 and nh > 0:
                pw = nh ** mat[i, 4]
                spec = mat[i, 3] * pw
            term = albedo * lam + spec
            shade += cl * term
            # reverse
            g_cl = g_s * term
            g_alb += g_s * cl * lam
            g_spec = g_s.dot(cl)
            g_lam = (g_s * cl).dot(albedo)
            g_L = ti.Vector([0.0] * 3, self.dtype)
            if nl > 0:
                g_n += g_lam * L
                g_L += g_lam * n
            if lam > 0 and nh > 0:
                g_S += g_spec * pw
                g_sh += g_spec * mat[i, 3] * pw * ti.log(nh)
                g_nh = g_spec * mat[i, 3] * mat[i, 4] * pw / nh
                g_n += g_nh * hv
                g_hl = (g_nh * n - hv * hv.dot(g_nh * n)) / hn
                g_L += g_hl
                g_rd -= g_hl
            g_Lraw = (g_L - L * L.dot(g_L)) / ln
            g_col = g_cl * vk * fall
            if point:
                g_fall = g_cl.dot(col * vk)
                g_Lraw += g_fall * (-2) / (ln * ln * ln * ln) * Lraw  # fall = 1 / |Lraw|^2
                g_x -= g_Lraw
            for a in ti.static(range(3)):
                ti.atomic_add(glights[l, 1 + a], ti.select(point, g_Lraw[a], -g_Lraw[a]))
                ti.atomic_add(glights[l, 4 + a], g_col[a])
        return shade, g_alb, g_S, g_sh, g_x, g_n, g_rd

    # ------------------------------------------------------------ shadow grid
    def build_grid(self, centers, radii):
        """A uniform grid over the spheres' bounds, about two spheres a cell, as flat
        (start, items) tensors on the spheres' device."""
        lo = (centers - radii[:, None]).min(0).values
        hi = (centers + radii[:, None]).max(0).values
        ext = (hi - lo).clamp(min=1e-6 * float((hi - lo).max()))
        M = len(centers)
        h = float((2 * ext.prod() / M) ** (1 / 3))
        h = max(h, float((ext / 128).max()))  # at most 128 cells an axis
        dims = torch.clamp((ext / h).ceil().long(), 1, 128)
        meta = torch.tensor([*lo.tolist(), h, *dims.tolist()], dtype=centers.dtype, device=centers.device)
        counts = torch.zeros(int(dims.prod()) + 1, dtype=torch.int32, device=centers.device)
        self._grid_count(centers, radii, meta, counts)
        start = torch.cat([torch.zeros(1, dtype=torch.int64, device=counts.device), counts.cumsum(0)]).to(torch.int32)
        items = torch.empty(max(int(start[-1]), 1), dtype=torch.int32, device=centers.device)
        cursor = start[:-1].clone()
        self._grid_fill(centers, radii, meta, cursor, items)
        return meta, start, items

    @ti.func
    def _cells(self, meta: ti.template(), ci, ri):
        lo = ti.Vector([meta[0], meta[1], meta[2]], self.dtype)
        dims = ti.Vector([ti.cast(meta[4], ti.i32), ti.cast(meta[5], ti.i32), ti.cast(meta[6], ti.i32)])
        a = ti.cast(ti.floor((ci - ri - lo) / meta[3]), ti.i32)
        b = ti.cast(ti.floor((ci + ri - lo) / meta[3]), ti.i32)
        return ti.max(a, 0), ti.min(b, dims - 1), dims

    @ti.kernel
    def _grid_count(self, c: ti.types.ndarray(), r: ti.types.ndarray(), meta: ti.types.ndarray(),
                    counts: ti.types.ndarray()):
        for i in range(c.shape[0]):
            a, b, dims = self._cells(meta, ti.Vector([c[i, 0], c[i, 1], c[i, 2]], self.dtype), ti.cast(r[i], self.dtype))
            for x in range(a[0], b[0] + 1):  # (plain loops: an ndrange divides per cell)
                for y in range(a[1], b[1] + 1):
                    for z in range(a[2], b[2] + 1):
                        ti.atomic_add(counts[(x * dims[1] + y) * dims[2] + z], 1)

    @ti.kernel
    def _grid_fill(self, c: ti.types.ndarray(), r: ti.types.ndarray(), meta: ti.types.ndarray(),
                   cursor: ti.types.ndarray(), items: ti.types.ndarray()):
        for i in range(c.shape[0]):
            a, b, dims = self._cells(meta, ti.Vector([c[i, 0], c[i, 1], c[i, 2]], self.dtype), ti.cast(r[i], self.dtype))
            for x in range(a[0], b[0] + 1):
                for y in range(a[1], b[1] + 1):
                    for z in range(a[2], b[2] + 1):
                        items[ti.atomic_add(cursor[(x * dims[1] + y) * dims[2] + z], 1)] = i

    @ti.func
    def _hits(self, x, L, tmax, skip, rs, i, c: ti.template(), r: ti.template()):
        """Does the segment x + t L, 0 < t < tmax, meet sphere i (not `skip`)?"""
        hit = 0
        if i != skip:
            oc = x - ti.Vector([c[i, 0], c[i, 1], c[i, 2]], self.dtype)
            ri = ti.cast(r[i], self.dtype)
            b = oc.dot(L)
            disc = b * b - (oc.dot(oc) - ri * ri)
            if disc > 0:
                s = ti.sqrt(disc)
                if -b + s > 1e-4 * rs and -b - s < tmax:
                    hit = 1
        return hit

    @ti.func
    def _blocked(self, x, lights: ti.template(), l, skip, rs, c: ti.template(), r: ti.template(),
                 meta: ti.template(), start: ti.template(), items: ti.template()):
        """1 if light l is hidden from x by a sphere other than `skip` (rs: its radius, the
        scale of the self-intersection guard). lights[l] = (kind: 1 directional, 2 point, xyz)."""
        L = ti.Vector([lights[l, 1], lights[l, 2], lights[l, 3]], self.dtype)
        tmax = ti.cast(1e30, self.dtype)
        if lights[l, 0] > 1.5:
            L = L - x
            tmax = L.norm()
            L = L / tmax
        else:
            L = -L / L.norm()
        return self._traverse(x, L, tmax, skip, rs, c, r, meta, start, items)

    @ti.func
    def _traverse(self, x, L, tmax, skip, rs, c: ti.template(), r: ti.template(), meta: ti.template(),
                  start: ti.template(), items: ti.template()):
        lo = ti.Vector([meta[0], meta[1], meta[2]], self.dtype)
        h = ti.cast(meta[3], self.dtype)
        dims = ti.Vector([ti.cast(meta[4], ti.i32), ti.cast(meta[5], ti.i32), ti.cast(meta[6], ti.i32)])
        hi = lo + h * ti.cast(dims, self.dtype)
        t0, t1 = ti.cast(0.0, self.dtype), tmax
        for a in ti.static(range(3)):  # clip to the grid's box
            if L[a] != 0:
                ta, tb = (lo[a] - x[a]) / L[a], (hi[a] - x[a]) / L[a]
                t0, t1 = ti.max(t0, ti.min(ta, tb)), ti.min(t1, ti.max(ta, tb))
            elif x[a] < lo[a] or x[a] > hi[a]:
                t1 = -1.0
        hit = 0
        if t0 <= t1:
            p = x + t0 * L
            cell = ti.min(ti.max(ti.cast(ti.floor((p - lo) / h), ti.i32), 0), dims - 1)
            step = ti.Vector([1, 1, 1])
            tnext = ti.Vector([1e30, 1e30, 1e30], self.dtype)
            tdelta = ti.Vector([1e30, 1e30, 1e30], self.dtype)
            for a in ti.static(range(3)):
                if L[a] < 0:
                    step[a] = -1
                if L[a] != 0:
                    edge = lo[a] + h * (cell[a] + (1 if L[a] > 0 else 0))
                    tnext[a], tdelta[a] = (edge - x[a]) / L[a], h / ti.abs(L[a])
            going = 1
            while going == 1 and hit == 0:
                flat = (cell[0] * dims[1] + cell[1]) * dims[2] + cell[2]
                for j in range(start[flat], start[flat + 1]):
                    if hit == 0:
                        hit = self._hits(x, L, tmax, skip, rs, items[j], c, r)
                a = 0  # step to the nearest cell wall
                if tnext[1] < tnext[a]:
                    a = 1
                if tnext[2] < tnext[a]:
                    a = 2
                if tnext[a] > t1:
                    going = 0
                else:
                    cell[a] += step[a]
                    tnext[a] += tdelta[a]
                    if cell[a] < 0 or cell[a] >= dims[a]:
                        going = 0
        return hit

    @ti.kernel
    def _visible_points(self, x: ti.types.ndarray(), lights: ti.types.ndarray(), c: ti.types.ndarray(),
                        r: ti.types.ndarray(), scale: ti.f64, meta: ti.types.ndarray(), start: ti.types.ndarray(),
                        items: ti.types.ndarray(), vis: ti.types.ndarray()):
        for n, l in ti.ndrange(x.shape[0], lights.shape[0]):
            p = ti.Vector([x[n, 0], x[n, 1], x[n, 2]], self.dtype)
            vis[n, l] = 1 - self._blocked(p, lights, l, -1, ti.cast(scale, self.dtype), c, r, meta, start, items)

    # ------------------------------------------------------------ driver
    def visibility(self, camera, centers, radii, band, light=None, background_depth=None, rays=None):
        """Per-pixel records, int32: lists (V, H, W, KMAX) of sphere ids nearest first, valid
        below kept (V, H, W), and, with `light`, vis (V, H, W, KMAX, L) for its directional
        then point lights (else None). rays: camera.rays() when the caller has them already."""
        dt = _torch_dtype()
        dev = centers.device
        o, d = (a.detach().to(dev, dt).contiguous() for a in (rays or camera.rays()))
        c, r = centers.detach().to(dt).contiguous(), radii.detach().to(dt).contiguous()
        cam = _camera_table(camera, band).to(dev, dt)
        V, H, W = o.shape[:3]
        front = torch.full((V, H, W), torch.inf, dtype=dt, device=dev)
        if background_depth is not None:  # an opaque layer behind which nothing shows
            t = background_depth.detach().to(dev, dt).reshape(V, H, W)
            front = torch.where(t > 0, t, front).contiguous()
        count = torch.zeros((V, H, W), dtype=torch.int32, device=dev)
        lists = torch.zeros((V, H, W, KMAX), dtype=torch.int32, device=dev)
        # nearest spheres first, so that the occluded ones are mostly rejected before any test;
        # by 4096 depth buckets (an integer sort is several times faster than a float one)
        dist = ((c - camera.eye[0].detach().to(dev, dt)) ** 2).sum(-1)
        lo, hi = dist.min(), dist.max()
        order = torch.argsort(((dist - lo) * (4095 / (hi - lo).clamp(min=1e-30 * hi))).to(torch.int32))
        cs, rs = c[order].contiguous(), r[order].contiguous()
        self._splat(False, cam, o, d, cs, rs, front, count, lists)
        self._splat(True, cam, o, d, cs, rs, front, count, lists)
        table = light_table(light, dev, dt)
        shadows = len(table) > 0
        if shadows:
            grid = self.build_grid(c, r)
        else:  # placeholders: the kernel compiles its shadow rays out
            table = torch.zeros((1, 7), dtype=dt, device=dev)
            grid = (torch.zeros(7, dtype=dt, device=dev), torch.zeros(2, dtype=torch.int32, device=dev),
                    torch.zeros(1, dtype=torch.int32, device=dev))
        kept = torch.zeros((V, H, W), dtype=torch.int32, device=dev)
        vis = torch.ones((V, H, W, KMAX, len(table)), dtype=torch.int32, device=dev)
        self._resolve(cam, o, d, c, r, count, lists, order.to(torch.int32), table, shadows, *grid, kept, vis)
        return dict(lists=lists, kept=kept, vis=vis if shadows else None)

    def visible(self, points, light, centers, radii):
        """Which lights (directional then point) each point (N, 3) sees past the spheres:
        bool (N, L). For shadows cast by particles on other geometry."""
        dt = _torch_dtype()
        c, r = centers.detach().to(dt).contiguous(), radii.detach().to(dt).contiguous()
        table = light_table(light, c.device, dt)
        if len(table) == 0 or len(points) == 0:
            return torch.ones((len(points), len(table)), dtype=torch.bool, device=points.device)
        grid = self.build_grid(c, r)
        vis = torch.ones((len(points), len(table)), dtype=torch.int32, device=c.device)
        self._visible_points(points.detach().to(c.device, dt).contiguous(), table, c, r, float(r.max()), *grid, vis)
        return vis.bool().to(points.device)


def _camera_table(camera, band):
    """Per view: eye (3), camera-to-world rotation (9, row-major), fx, fy, cx, cy, ortho
    height (0: pinhole), image height, band (pixels)."""
    V = camera.V
    R = camera.rotation().detach().reshape(V, 9)
    ones = torch.ones(V, dtype=R.dtype)
    fx = camera.fx.detach() if camera.fx is not None else ones
    fy = camera.fy.detach() if camera.fy is not None else ones
    ortho = torch.full((V,), float(camera.ortho) if camera.ortho is not None else 0.0, dtype=R.dtype)
    return torch.cat([camera.eye.detach(), R, torch.stack([fx, fy, camera.cx.detach(), camera.cy.detach(), ortho,
                                                            ones * camera.height, ones * float(band)], -1)], -1)


def _smooth(u):
    s = (0.5 * (u + 1)).clamp(0, 1)
    return s * s * (3 - 2 * s)


def render(camera, centers, radii, colors, light, specular=0.0, shininess=16.0, band=0.5, shadows=True,
           background=(0.0, 0.0, 0.0), background_depth=None, tracer=None, rays=None):
    """Render spheres in V views: a dict of rgb (V, H, W, 3), depth (V, H, W; along the ray,
    0 where nothing), normal (V, H, W, 3), mask (V, H, W; soft coverage).

    centers (M, 3), radii (M,) or a float, colors (M, 3) or (3,); specular and shininess
    floats or (M,); light: render/shading.lights(...); band: the silhouette's soft width in
    pixels; shadows: cast hard shadow rays (not differentiated); background: an RGB or an
    image (V, H, W, 3), with background_depth (V, H, W; 0: open) to composite over another
    renderer's output; rays: camera.rays(), when the caller has them already. Every tensor
    may require grad (camera's included).
    """
    centers = torch.as_tensor(centers)
    if centers.ndim != 2 or centers.shape[-1] != 3 or len(centers) == 0:
        raise ValueError(f"centers must have shape (M, 3) with M > 0, got {tuple(centers.shape)}")
    M, dt = len(centers), camera.eye.dtype
    per = lambda a, shape, name: _per_sphere(a, M, shape, name, dt)
    radii, colors = per(radii, (), "radii"), per(colors, (3,), "colors")
    specular, shininess = per(specular, (), "specular"), per(shininess, (), "shininess")
    if not torch.isfinite(centers).all():
        raise ValueError("centers must be finite")
    if not (radii > 0).all():
        raise ValueError("radii must be positive")
    tracer = tracer or SphereTracer()
    rays = camera.rays() if rays is None else rays
    rec = tracer.visibility(camera, centers, radii, band, light if shadows else None, background_depth, rays)
    bg = torch.as_tensor(background, dtype=dt)
    if camera.fy is not None and camera.fy.requires_grad and torch.is_grad_enabled():
        # the band's width follows fy: only the torch pass differentiates it
        return _torch_pass(camera, rays, centers, radii, colors, specular, shininess, light, bg, band, rec)
    return _fused(tracer, camera, rays, centers, radii, colors, specular, shininess, light, bg, band, rec)


def _torch_pass(camera, rays, centers, radii, colors, specular, shininess, light, bg, band, rec):
    """render()'s differentiable pass in plain torch over the visibility records (the
    reference the fused kernel is tested against, and the path for gradients to fy)."""
    V, H, W, dt = camera.V, camera.height, camera.width, camera.eye.dtype
    o, d = (a.reshape(-1, 3) for a in rays)
    K = max(int(rec["kept"].max()), 1)
    ids = torch.where(torch.arange(K) < rec["kept"][..., None], rec["lists"][..., :K], -1).long().reshape(V * H * W, K)
    rows = (ids[:, 0] >= 0).nonzero()[:, 0]
    ids = ids[rows]
    valid = ids >= 0
    idx = ids.clamp(min=0)
    o, d = o[rows][:, None], d[rows][:, None]
    c, r = centers.to(dt)[idx], radii[idx]
    oc = c - o
    tc = (oc * d).sum(-1)
    d2 = ((oc * oc).sum(-1) - tc * tc).clamp(min=0)
    dist = torch.sqrt(torch.where(d2 > 0, d2, torch.ones_like(d2))) * (d2 > 0)
    fy = torch.ones(V, dtype=dt) * camera.height / camera.ortho if camera.ortho is not None else camera.fy
    fy = fy.repeat_interleave(H * W)[rows][:, None]
    w = band * (torch.ones_like(tc) / fy if camera.ortho is not None else tc / fy)
    cover = _smooth((r - dist) / w) * valid
    q = r * r - d2
    inside = q > 0
    t = tc - torch.sqrt(torch.where(inside, q, torch.ones_like(q))) * inside
    p = o + t[..., None] * d - c
    n = p / p.norm(dim=-1, keepdim=True).clamp(min=1e-30)
    x = c + r[..., None] * n
    vis = None if rec["vis"] is None else rec["vis"][..., :K, :].reshape(V * H * W, K, -1)[rows].bool()
    shade = blinn_phong(x, n, d, colors[idx], specular[idx], shininess[idx], light, vis)
    bg = bg.reshape(-1, 3).expand(V * H * W, 3) if bg.ndim <= 1 else bg.reshape(V * H * W, 3)
    rgb_k, depth_k, normal_k = 0, 0, 0
    T = torch.ones_like(tc[:, 0])
    for k in range(ids.shape[1]):  # front to back
        wk = cover[:, k] * T
        rgb_k = rgb_k + wk[:, None] * shade[:, k]
        depth_k = depth_k + wk * t[:, k]
        normal_k = normal_k + wk[:, None] * n[:, k]
        T = T * (1 - cover[:, k])
    mask_r = 1 - T
    rgb = bg.clone().to(dt)
    rgb = rgb.index_put((rows,), rgb_k + T[:, None] * bg[rows])
    mask = torch.zeros(V * H * W, dtype=dt).index_put((rows,), mask_r)
    safe = torch.where(mask_r > 0, mask_r, torch.ones_like(mask_r))
    depth = torch.zeros(V * H * W, dtype=dt).index_put((rows,), depth_k / safe)
    normal = torch.zeros(V * H * W, 3, dtype=dt).index_put((rows,), normal_k / safe[:, None])
    return dict(rgb=rgb.reshape(V, H, W, 3), depth=depth.reshape(V, H, W), normal=normal.reshape(V, H, W, 3),
                mask=mask.reshape(V, H, W))


def _fused(tracer, camera, rays, centers, radii, colors, specular, shininess, light, bg, band, rec):
    """render()'s differentiable pass as one Taichi kernel forward and one reverse: gradients
    reach the rays (hence the camera's pose), the spheres, their materials, the lights and
    the background."""
    dt, dev = _torch_dtype(), centers.device
    V, H, W = camera.V, camera.height, camera.width
    o, d = (a.to(dev, dt).contiguous() for a in rays)
    mat = torch.cat([colors, specular[:, None], shininess[:, None]], 1).to(dev, dt).contiguous()
    table, ambient = kernel_lights(light, dev, dt, detach=False)
    shadows = rec["vis"] is not None
    vis = rec["vis"] if shadows else torch.zeros((1, 1, 1, 1, 1), dtype=torch.int32, device=dev)
    bg = bg.to(dev, dt)
    bg = (bg.reshape(1, 1, 1, 3) if bg.ndim <= 1 else bg.reshape(V, H, W, 3)).expand(V, H, W, 3).contiguous()
    fixed = (_camera_table(camera, band).to(dev, dt), rec["lists"], rec["kept"], vis, shadows)
    out = _Composite.apply(tracer, fixed, o, d, centers.to(dev, dt).contiguous(), radii.to(dev, dt).contiguous(), mat,
                           table, ambient, bg).to(camera.eye.dtype)
    return dict(rgb=out[..., :3], depth=out[..., 3], normal=out[..., 4:7], mask=out[..., 7])


class _Composite(torch.autograd.Function):
    """The fused pass as a torch op: forward SphereTracer._composite, backward its reverse
    SphereTracer._composite_reverse (written out, no tape)."""

    @staticmethod
    def forward(ctx, tracer, fixed, *inputs):
        cam, ids, kept, vis, shadows = fixed
        V, H, W = ids.shape[:3]
        out = torch.empty((V, H, W, 8), dtype=inputs[0].dtype, device=inputs[0].device)
        a = [x.detach() for x in inputs]  # (Taichi would look for the .grad of a tensor that requires one)
        tracer._composite(cam, *a[:5], ids, kept, vis, *a[5:], shadows, out)
        ctx.tracer, ctx.fixed = tracer, fixed
        ctx.save_for_backward(*inputs)
        return out

    @staticmethod
    def backward(ctx, g_out):
        cam, ids, kept, vis, shadows = ctx.fixed
        inputs = [a.detach() for a in ctx.saved_tensors]
        grads = [torch.zeros_like(a) for a in inputs]
        ctx.tracer._composite_reverse(cam, *inputs[:5], ids, kept, vis, *inputs[5:], shadows, g_out.contiguous(), *grads)
        return (None, None, *grads)


def _per_sphere(a, M, shape, name, dtype):
    a = torch.as_tensor(a, dtype=dtype) if not torch.is_tensor(a) else a.to(dtype)
    if a.shape == shape:
        return a.expand(M, *shape)
    if a.shape != (M, *shape):
        raise ValueError(f"{name} must have shape {shape} or {(M, *shape)}, got {tuple(a.shape)}")
    return a
