// 4-bit blocks of 32 (Q4_0 and Q4_1 repacked): 5 words, [d | m << 16, 16 bytes of nibbles];
// value d * q + m; low nibbles are elements 0..16, high nibbles 16..32.
fn w_at(row: u32, col: u32) -> f32 {
    let b = (row * (p.k / 32u) + col / 32u) * 5u;
    let j = col % 32u;
    let dm = unpack2x16float(w[b]);
    let byte = (w[b + 1u + (j % 16u) / 4u] >> ((j % 4u) * 8u)) & 0xffu;
    let q = select(byte & 0xfu, byte >> 4u, j >= 16u);
    return dm.x * f32(q) + dm.y;
}

// Unit u of a row: word u % 4 of block u / 4, i.e. elements 4w..4w+4 and 16+4w..16+4w+4.
fn w_dot8(row: u32, u: u32) -> f32 {
    let b = (row * (p.k / 32u) + u / 4u) * 5u;
    let wi = u % 4u;
    let dm = unpack2x16float(w[b]);
    let qw = w[b + 1u + wi];
    let xo = (u / 4u) * 32u + wi * 4u;
    var s = 0.0;
    for (var i = 0u; i < 4u; i++) {
        let byte = (qw >> (i * 8u)) & 0xffu;
        s += (dm.x * f32(byte & 0xfu) + dm.y) * x[xo + i];
        s += (dm.x * f32(byte >> 4u) + dm.y) * x[xo + 16u + i];
    }
    return s;
}
