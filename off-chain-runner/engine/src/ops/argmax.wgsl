// tokens[r] = the index of the largest of row r's n values, the lowest such index on ties:
// greedy decoding's pick, made where the logits are so a step reads back 4 bytes per
// sequence instead of the vocabulary. One workgroup per row; each thread keeps the best of
// every 64th value (the first on ties, scanning upwards), then a tree keeps the larger, or
// on ties the lower index. Max with lowest-index ties is one total order, so the result
// does not depend on the order values are compared in: it is what a left-to-right scan on
// the CPU picks (`argmax.rs`'s CPU twin). (WGSL lets drivers assume no NaN: none is handled.)
struct Params { n: u32, pad0: u32, pad1: u32, pad2: u32 }
struct Step { m: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<storage, read> values: array<f32>;
@group(0) @binding(1) var<storage, read_write> tokens: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<uniform> step: Step;

const NONE: u32 = 0xffffffffu;

var<workgroup> best_value: array<f32, 64>;
var<workgroup> best_index: array<u32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wid.x;
    if (row >= step.m) {
        return;
    }
    let base = row * p.n;
    // A thread past the row's end holds no value (index NONE): it loses to every real
    // one, -inf included.
    var value = 0.0;
    var index = NONE;
    if (t < p.n) {
        value = values[base + t];
        index = t;
    }
    for (var i = t + 64u; i < p.n; i += 64u) {
        let v = values[base + i];
        if (v > value) {
            value = v;
            index = i;
        }
    }
    best_value[t] = value;
    best_index[t] = index;
    workgroupBarrier();
    for (var h = 32u; h > 0u; h >>= 1u) {
        if (t < h) {
            let v = best_value[t + h];
            let i = best_index[t + h];
            let mine = best_index[t];
            if (i != NONE && (mine == NONE || v > best_value[t] || (v == best_value[t] && i < mine))) {
                best_value[t] = v;
                best_index[t] = i;
            }
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        tokens[row] = best_index[0];
    }
}
