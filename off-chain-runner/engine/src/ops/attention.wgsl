// Scaled dot-product attention, one workgroup per (head, query row). Query row m attends to
// the key and value rows rows[m].kv_start .. + rows[m].kv_len: its own slot of the KV cache
// up to its own position for a decoder (causal), its own text's rows for an encoder. So
// rows of different sequences in one step never see each other.
// Scores go through a scratch buffer (ctx floats per row and head); the max, the sum and the
// weighted sum of values are reduced in an order that depends only on kv_len, never on the
// other rows of the step nor on how a prompt was chunked: bit-identical either way.
struct Params { heads: u32, kv_heads: u32, head_dim: u32, ctx: u32, scale: f32, pad0: u32, pad1: u32, pad2: u32 }
struct Step { m: u32, pad0: u32, pad1: u32, pad2: u32 }
struct Row { pos: u32, kv_row: u32, kv_start: u32, kv_len: u32 }

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;
@group(0) @binding(4) var<storage, read_write> scores: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
@group(0) @binding(6) var<uniform> step: Step;
@group(0) @binding(7) var<storage, read> rows: array<Row>;

var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let h = wid.x;
    let m = wid.y;
    if (m >= step.m) {
        return;
    }
    let d = p.head_dim;
    let kvh = h / (p.heads / p.kv_heads);
    let kv_stride = p.kv_heads * d;
    let q_base = (m * p.heads + h) * d;
    let len = rows[m].kv_len;
    let kv0 = rows[m].kv_start;
    let sb = (m * p.heads + h) * p.ctx;

    var best = -3.0e38;
    for (var j = t; j < len; j += 64u) {
        var s = 0.0;
        for (var i = 0u; i < d; i++) {
            s += q[q_base + i] * k[(kv0 + j) * kv_stride + kvh * d + i];
        }
        s *= p.scale;
        scores[sb + j] = s;
        best = max(best, s);
    }
    partial[t] = best;
    workgroupBarrier();
    for (var r = 32u; r > 0u; r >>= 1u) {
        if (t < r) {
            partial[t] = max(partial[t], partial[t + r]);
        }
        workgroupBarrier();
    }
    let top = partial[0];
    workgroupBarrier();

    var sum = 0.0;
    for (var j = t; j < len; j += 64u) {
        let e = exp(scores[sb + j] - top);
        scores[sb + j] = e;
        sum += e;
    }
    partial[t] = sum;
    storageBarrier();
    workgroupBarrier();
    for (var r = 32u; r > 0u; r >>= 1u) {
        if (t < r) {
            partial[t] += partial[t + r];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / partial[0];

    for (var i = t; i < d; i += 64u) {
        var acc = 0.0;
        for (var j = 0u; j < len; j++) {
            acc += scores[sb + j] * v[(kv0 + j) * kv_stride + kvh * d + i];
        }
        o[q_base + i] = acc * inv;
    }
}
