// The SwiGLU epilogue: W's rows interleave the gate and up projections (row 2j is output
// j's gate, row 2j + 1 its up), so one thread holds both sums and stores
// silu(gate) · up, as elementwise.wgsl computes it, without a pass of its own.
fn store_pair(m: u32, n: u32, gate_sum: f32, up_sum: f32) {
    var gate = gate_sum;
    var up = up_sum;
    if ((p.flags & 1u) != 0u) {
        gate += bias[n];
        up += bias[n + 1u];
    }
    y[m * (p.n / 2u) + n / 2u] = gate / (1.0 + exp(-gate)) * up;
}
