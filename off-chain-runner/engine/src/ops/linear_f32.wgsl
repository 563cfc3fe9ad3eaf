// f32 weights: one float per word. Unit u of a row is elements 8u..8u+8.
fn unit_col(u: u32, e: u32) -> u32 {
    return u * 8u + e;
}

fn w_unit(row: u32, u: u32) -> array<f32, 8> {
    let base = row * p.k + u * 8u;
    var v: array<f32, 8>;
    for (var i = 0u; i < 8u; i++) {
        v[i] = bitcast<f32>(w[base + i]);
    }
    return v;
}
