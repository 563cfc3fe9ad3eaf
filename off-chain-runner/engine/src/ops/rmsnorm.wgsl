// y = x / sqrt(mean(x²) + eps) * g, one workgroup per row, fixed-order tree reduction: a
// row's result depends on that row alone. flags: 1 row r reads x's row index[r] (the
// last token of each sequence in a step, gathered for the output head).
struct Params { n: u32, eps: f32, flags: u32, pad: u32 }
struct Step { m: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;
@group(0) @binding(5) var<storage, read> index: array<u32>;

var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wid.x;
    if (row >= step.m) {
        return;
    }
    let src = select(row, index[row], (p.flags & 1u) != 0u) * p.n;
    let dst = row * p.n;
    var s = 0.0;
    for (var i = t; i < p.n; i += 64u) {
        s += x[src + i] * x[src + i];
    }
    partial[t] = s;
    workgroupBarrier();
    for (var h = 32u; h > 0u; h >>= 1u) {
        if (t < h) {
            partial[t] += partial[t + h];
        }
        workgroupBarrier();
    }
    let scale = 1.0 / sqrt(partial[0] / f32(p.n) + p.eps);
    for (var i = t; i < p.n; i += 64u) {
        y[dst + i] = x[src + i] * scale * g[i];
    }
}
