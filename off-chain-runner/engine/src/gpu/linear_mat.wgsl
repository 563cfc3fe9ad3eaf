// Prefill: 64×64 output tiles, 256 threads each computing 4×4 outputs. Each step stages
// a 16-wide slice of X and of W (dequantized once into workgroup memory); every output
// adds its products in k order, so the result does not depend on scheduling.
var<workgroup> xs: array<f32, 1024>;
var<workgroup> ws: array<f32, 1024>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let m0 = wid.y * 64u;
    let n0 = wid.x * 64u;
    let tx = t % 16u;
    let ty = t / 16u;
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < p.k; k0 += 16u) {
        for (var i = 0u; i < 4u; i++) {
            let e = t + i * 256u;
            let r = e / 16u;
            let c = e % 16u;
            var xv = 0.0;
            if (m0 + r < step.m) {
                xv = x[(m0 + r) * p.k + k0 + c];
            }
            xs[e] = xv;
            var wv = 0.0;
            if (n0 + r < p.n) {
                wv = w_at(n0 + r, k0 + c);
            }
            ws[e] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            var xr: array<f32, 4>;
            var wr: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                xr[i] = xs[(ty * 4u + i) * 16u + kk];
                wr[i] = ws[(tx * 4u + i) * 16u + kk];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] += xr[i] * wr[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let m = m0 + ty * 4u + i;
            let n = n0 + tx * 4u + j;
            if (m < step.m && n < p.n) {
                store(m, n, acc[i * 4u + j]);
            }
        }
    }
}
