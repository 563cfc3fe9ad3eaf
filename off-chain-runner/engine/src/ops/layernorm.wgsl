// In place: x = (x - mean) / sqrt(var + eps) * g + b, one workgroup per row.
struct Params { n: u32, eps: f32, flags: u32, pad: u32 }
struct Step { m: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;

var<workgroup> partial: array<f32, 64>;

fn reduce(t: u32, v: f32) -> f32 {
    partial[t] = v;
    workgroupBarrier();
    for (var h = 32u; h > 0u; h >>= 1u) {
        if (t < h) {
            partial[t] += partial[t + h];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wid.x;
    if (row >= step.m) {
        return;
    }
    let base = row * p.n;
    var s = 0.0;
    for (var i = t; i < p.n; i += 64u) {
        s += x[base + i];
    }
    let mean = reduce(t, s) / f32(p.n);
    var v = 0.0;
    for (var i = t; i < p.n; i += 64u) {
        let d = x[base + i] - mean;
        v += d * d;
    }
    let inv = 1.0 / sqrt(reduce(t, v) / f32(p.n) + p.eps);
    for (var i = t; i < p.n; i += 64u) {
        x[base + i] = (x[base + i] - mean) * inv * g[i] + b[i];
    }
}
