// Element-wise activations over m rows of n: op 0 is SwiGLU's a = silu(a) * b, op 1 is
// BERT's exact GELU a = a/2 (1 + erf(a/√2)) (b unused).
struct Params { n: u32, op: u32, pad0: u32, pad1: u32 }
struct Step { m: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<uniform> step: Step;

// Abramowitz and Stegun 7.1.26: |error| < 1.5e-7, far below the f32 tolerance the tests use.
fn erf(z: f32) -> f32 {
    let x = abs(z);
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-x * x);
    return select(-y, y, z >= 0.0);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if (i >= step.m * p.n) {
        return;
    }
    let v = a[i];
    if (p.op == 0u) {
        a[i] = v / (1.0 + exp(-v)) * b[i];
    } else {
        a[i] = 0.5 * v * (1.0 + erf(v * 0.70710678118654752));
    }
}
