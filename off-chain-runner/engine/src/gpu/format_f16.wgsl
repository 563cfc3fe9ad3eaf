// f16 weights: two halves per word, unpacked to f32 (core WGSL, no SHADER_F16 needed).
fn w_at(row: u32, col: u32) -> f32 {
    let i = row * p.k + col;
    let v = unpack2x16float(w[i / 2u]);
    return select(v.x, v.y, (i & 1u) == 1u);
}

fn w_dot8(row: u32, u: u32) -> f32 {
    let base = (row * p.k + u * 8u) / 2u;
    let xo = u * 8u;
    var s = 0.0;
    for (var i = 0u; i < 4u; i++) {
        let v = unpack2x16float(w[base + i]);
        s += v.x * x[xo + 2u * i] + v.y * x[xo + 2u * i + 1u];
    }
    return s;
}
