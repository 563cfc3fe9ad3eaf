// Prefill and encoders on short inputs (2 to 16 rows): 16×64 output tiles, 256 threads each
// computing 1×4 outputs, so a 10-token sentence does not pay for the 64-row tiles of
// linear_mat.wgsl. Each output adds its products in k order, as there: the two kernels
// differ only in how outputs are spread over threads.
var<workgroup> xs: array<f32, 256>;
var<workgroup> ws: array<f32, 1024>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let m0 = wid.y * 16u;
    let n0 = wid.x * 64u;
    let tx = t % 16u;
    let ty = t / 16u;
    var acc: array<f32, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += 16u) {
        var xv = 0.0;
        if (m0 + ty < step.m) {
            xv = x[(m0 + ty) * p.k + k0 + tx];
        }
        xs[t] = xv;
        for (var i = 0u; i < 4u; i++) {
            let e = t + i * 256u;
            let r = e / 16u;
            let c = e % 16u;
            var wv = 0.0;
            if (n0 + r < p.n) {
                wv = w_at(n0 + r, k0 + c);
            }
            ws[e] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            let xr = xs[ty * 16u + kk];
            for (var j = 0u; j < 4u; j++) {
                acc[j] += xr * ws[(tx * 4u + j) * 16u + kk];
            }
        }
        workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
        let m = m0 + ty;
        let n = n0 + tx * 4u + j;
        if (m < step.m && n < p.n) {
            store(m, n, acc[j]);
        }
    }
}
