// Batch-1 decode: each workgroup computes 8 rows, 8 lanes per row. A lane takes every
// eighth 8-element unit of its row, so the row of W is read once; the 8 partial sums are
// then added by a fixed 3-step tree (deterministic, no atomics).
var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let lane = t % 8u;
    let row = (wid.x + wid.y * 32768u) * 8u + t / 8u;
    var s = 0.0;
    if (row < p.n) {
        for (var u = lane; u < p.k / 8u; u += 8u) {
            s += w_dot8(row, u);
        }
    }
    partial[t] = s;
    workgroupBarrier();
    for (var h = 4u; h > 0u; h >>= 1u) {
        if (lane < h) {
            partial[t] += partial[t + h];
        }
        workgroupBarrier();
    }
    if (lane == 0u && row < p.n) {
        store(0u, row, partial[t]);
    }
}
