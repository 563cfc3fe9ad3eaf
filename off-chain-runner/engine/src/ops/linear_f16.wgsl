// f16 weights: two halves per word, unpacked to f32 (core WGSL, no SHADER_F16 needed).
// Unit u of a row is elements 8u..8u+8.
fn unit_col(u: u32, e: u32) -> u32 {
    return u * 8u + e;
}

fn w_unit(row: u32, u: u32) -> array<f32, 8> {
    let base = (row * p.k + u * 8u) / 2u;
    var v: array<f32, 8>;
    for (var i = 0u; i < 4u; i++) {
        let h = unpack2x16float(w[base + i]);
        v[2u * i] = h.x;
        v[2u * i + 1u] = h.y;
    }
    return v;
}
