// 8-bit blocks of 32 (Q8_0 repacked): 9 words, [d, 32 signed bytes]; value d * q.
fn q8(word: u32, i: u32) -> f32 {
    return f32(extractBits(bitcast<i32>(word), i * 8u, 8u));
}

fn w_at(row: u32, col: u32) -> f32 {
    let b = (row * (p.k / 32u) + col / 32u) * 9u;
    let j = col % 32u;
    let d = unpack2x16float(w[b]).x;
    return d * q8(w[b + 1u + j / 4u], j % 4u);
}

// Unit u of a row: words 2w, 2w+1 of block u / 4 (w = u % 4), elements 8w..8w+8.
fn w_dot8(row: u32, u: u32) -> f32 {
    let b = (row * (p.k / 32u) + u / 4u) * 9u;
    let wi = (u % 4u) * 2u;
    let d = unpack2x16float(w[b]).x;
    let xo = (u / 4u) * 32u + wi * 4u;
    var s = 0.0;
    for (var h = 0u; h < 2u; h++) {
        let qw = w[b + 1u + wi + h];
        for (var i = 0u; i < 4u; i++) {
            s += d * q8(qw, i) * x[xo + h * 4u + i];
        }
    }
    return s;
}
