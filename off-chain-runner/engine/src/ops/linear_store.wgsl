// The plain epilogue: y = x · Wᵀ (+ bias) (+ y when accumulating), row m of y at row m,
// or at rows[m].kv_row (flag 4).
fn store(m: u32, n: u32, dot: f32) {
    var v = dot;
    if ((p.flags & 1u) != 0u) {
        v += bias[n];
    }
    var row = m;
    if ((p.flags & 4u) != 0u) {
        row = rows[m].kv_row;
    }
    let at = row * p.n + n;
    if ((p.flags & 2u) != 0u) {
        v += y[at];
    }
    y[at] = v;
}
