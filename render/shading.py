"""Shading over per-pixel surface records, in torch: Lambert + Blinn-Phong under point,
directional and ambient lights. Differentiable in points, normals, materials and lights.
Shadows are not computed here (visibility is the renderers' job; not differentiated)."""
import taichi as ti
import torch

KINDS = ("ambient", "directional", "point")


def lights(specs, dtype=torch.float64):
    """Light dicts -> a dict of tensors. {kind: ambient, color}, {kind: directional,
    direction (toward the scene), color}, {kind: point, position, color}; color is RGB
    intensity. Pass tensors with requires_grad to differentiate w.r.t. a light."""
    out = {k: [] for k in KINDS}
    for i, s in enumerate(specs):
        kind = s.get("kind")
        if kind not in KINDS:
            raise ValueError(f"lights[{i}].kind must be one of {KINDS}, got {kind!r}")
        need = {"ambient": ("color",), "directional": ("direction", "color"), "point": ("position", "color")}[kind]
        if set(s) - {"kind", *need} or set(need) - set(s):
            raise ValueError(f"lights[{i}] ({kind}) takes exactly {list(need)}, got {sorted(set(s) - {'kind'})}")
        out[kind].append(torch.cat([torch.as_tensor(s[k], dtype=dtype).reshape(3) for k in need]))
    return {k: (torch.stack(v) if v else torch.zeros(0, 3 * (1 if k == "ambient" else 2), dtype=dtype))
            for k, v in out.items()}


def blinn_phong(x, n, view, albedo, specular, shininess, light, visible=None):
    """Radiance (..., 3) at points x with unit normals n seen along unit `view` (from the
    eye toward x). albedo (..., 3), specular (...), shininess (...); light from `lights`;
    visible (..., L): which directional then point lights each point sees (hard shadows,
    computed by a renderer and not differentiated); None: all."""
    rgb = albedo * light["ambient"].sum(0) if len(light["ambient"]) else torch.zeros_like(albedo)
    to_eye = -view
    dirs = [(-d[:3] / d[:3].norm(), d[3:]) for d in light["directional"]]
    for p in light["point"]:
        L = p[:3] - x
        dist2 = (L * L).sum(-1, keepdim=True)
        dirs.append((L / dist2.sqrt(), p[3:] / dist2))  # inverse-square falloff
    for l, (L, color) in enumerate(dirs):
        if visible is not None:
            color = color * visible[..., l:l + 1]
        lam = (n * L).sum(-1, keepdim=True).clamp(min=0)
        h = L + to_eye
        h = h / h.norm(dim=-1, keepdim=True)
        spec = (n * h).sum(-1, keepdim=True).clamp(min=0) ** shininess[..., None]
        rgb = rgb + color * (albedo * lam + specular[..., None] * spec * (lam > 0))
    return rgb


def light_table(light, device, dtype, detach=True):
    """`lights` as the kernels read them: (kind, xyz, rgb) rows in blinn_phong's order,
    directional (1, direction, colour) then point (2, position, colour); differentiable in the
    lights unless detach. No ambient, which has no direction (see kernel_lights)."""
    if light is None:
        return torch.zeros((0, 7), dtype=dtype, device=device)
    cut = (lambda l: l.detach()) if detach else (lambda l: l)
    rows = [torch.cat([torch.ones(1, dtype=dtype), cut(l).to(dtype)]) for l in light["directional"]]
    rows += [torch.cat([torch.full((1,), 2.0, dtype=dtype), cut(l).to(dtype)]) for l in light["point"]]
    return (torch.stack(rows) if rows else torch.zeros((0, 7), dtype=dtype)).to(device)


def kernel_lights(light, device, dtype, detach=True):
    """What light_term's callers pass a kernel: the light table, with one black directional
    light when there is none (the kernels' loops over it stay well formed), and the ambient
    lights' sum (3,)."""
    table = light_table(light, device, dtype, detach)
    if len(table) == 0:
        table = torch.tensor([[1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0]], dtype=dtype, device=device)
    amb = light["ambient"]
    ambient = amb.to(device, dtype).sum(0) if len(amb) else torch.zeros(3, dtype=dtype, device=device)
    return table, (ambient.detach() if detach else ambient).contiguous()


@ti.func
def light_term(x, n, rd, albedo, specular, shininess, lights: ti.template(), l):
    """blinn_phong's radiance from light l alone, in a Taichi kernel: lights holds rows
    (kind: 1 directional, 2 point; direction or position; colour), directional then point,
    as light_table builds them."""
    P = ti.Vector([lights[l, 1], lights[l, 2], lights[l, 3]])  # (the process float: sims.init)
    color = ti.Vector([lights[l, 4], lights[l, 5], lights[l, 6]])
    L = -P / P.norm()
    if lights[l, 0] > 1.5:  # a point light, inverse-square falloff
        L = P - x
        dist2 = L.dot(L)
        L, color = L / ti.sqrt(dist2), color / dist2
    lam = ti.max(n.dot(L), 0.0)
    nh = n.dot((L - rd).normalized())
    spec = albedo[0] * 0
    if lam > 0 and nh > 0:  # (0 ** s has no finite reverse in s)
        spec = specular * nh ** shininess
    return color * (albedo * lam + spec)
