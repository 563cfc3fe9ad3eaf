// 4-bit blocks of 32 (Q4_0 and Q4_1 repacked): 5 words, [d | m << 16, 16 bytes of nibbles];
// value d * q + m; low nibbles are elements 0..16, high nibbles 16..32. Unit u of a row is
// word u % 4 of block u / 4: elements 4w..4w+4 (low nibbles), then 16+4w..16+4w+4 (high).
fn unit_col(u: u32, e: u32) -> u32 {
    return (u / 4u) * 32u + (u % 4u) * 4u + (e % 4u) + (e / 4u) * 16u;
}

fn w_unit(row: u32, u: u32) -> array<f32, 8> {
    let b = (row * (p.k / 32u) + u / 4u) * 5u;
    let dm = unpack2x16float(w[b]);
    let qw = w[b + 1u + u % 4u];
    var v: array<f32, 8>;
    for (var i = 0u; i < 4u; i++) {
        let byte = (qw >> (i * 8u)) & 0xffu;
        v[i] = dm.x * f32(byte & 0xfu) + dm.y;
        v[4u + i] = dm.x * f32(byte >> 4u) + dm.y;
    }
    return v;
}
