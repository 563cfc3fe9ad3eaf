// 8-bit blocks of 32 (Q8_0 repacked): 9 words, [d, 32 signed bytes]; value d * q. Unit u of
// a row is words 2w, 2w+1 of block u / 4 (w = u % 4): elements 8u..8u+8.
fn unit_col(u: u32, e: u32) -> u32 {
    return u * 8u + e;
}

fn w_unit(row: u32, u: u32) -> array<f32, 8> {
    let b = (row * (p.k / 32u) + u / 4u) * 9u;
    let wi = b + 1u + (u % 4u) * 2u;
    let d = unpack2x16float(w[b]).x;
    var v: array<f32, 8>;
    for (var h = 0u; h < 2u; h++) {
        let qw = bitcast<i32>(w[wi + h]);
        for (var i = 0u; i < 4u; i++) {
            v[h * 4u + i] = d * f32(extractBits(qw, i * 8u, 8u));
        }
    }
    return v;
}
