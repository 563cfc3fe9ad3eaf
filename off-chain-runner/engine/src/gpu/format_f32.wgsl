// f32 weights: one float per word.
fn w_at(row: u32, col: u32) -> f32 {
    return bitcast<f32>(w[row * p.k + col]);
}

fn w_dot8(row: u32, u: u32) -> f32 {
    let base = row * p.k + u * 8u;
    let xo = u * 8u;
    var s = 0.0;
    for (var i = 0u; i < 8u; i++) {
        s += bitcast<f32>(w[base + i]) * x[xo + i];
    }
    return s;
}
