// The QKV epilogue: W is the query, key and value projections stacked (q_width, then
// kv_width, then kv_width rows), so one pass over x gives all three. Query outputs go to y
// at row m; key and value outputs to their caches at rows[m].kv_row.
@group(0) @binding(7) var<storage, read_write> keys: array<f32>;
@group(0) @binding(8) var<storage, read_write> values: array<f32>;

fn store(m: u32, n: u32, dot: f32) {
    var v = dot;
    if ((p.flags & 1u) != 0u) {
        v += bias[n];
    }
    if (n < p.q_width) {
        y[m * p.q_width + n] = v;
        return;
    }
    let kv = rows[m].kv_row * p.kv_width;
    let j = n - p.q_width;
    if (j < p.kv_width) {
        keys[kv + j] = v;
    } else {
        values[kv + j - p.kv_width] = v;
    }
}
