// y = x · Wᵀ (+ bias) (+ y when accumulating), W of n rows by k columns in the format
// spliced in below. flags: 1 bias, 2 accumulate into y, 4 write rows at step.pos (the KV
// cache) instead of row 0.
struct LinearParams { n: u32, k: u32, flags: u32, pad: u32 }
struct Step { m: u32, pos: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: LinearParams;
@group(0) @binding(5) var<uniform> step: Step;

fn store(m: u32, n: u32, dot: f32) {
    var v = dot;
    if ((p.flags & 1u) != 0u) {
        v += bias[n];
    }
    let row = select(m, step.pos + m, (p.flags & 4u) != 0u);
    let at = row * p.n + n;
    if ((p.flags & 2u) != 0u) {
        v += y[at];
    }
    y[at] = v;
}
