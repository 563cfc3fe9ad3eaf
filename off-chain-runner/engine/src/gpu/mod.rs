//! The wgpu device, the kernels (the `.wgsl` files beside this one) and the recording of a
//! model's forward pass as a fixed list of dispatches: pipelines, buffers and bind groups
//! are made once per model; each step only writes the step's uniform (rows, position) and
//! submits one command buffer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use crate::quant::GpuFormat;
use crate::{Error, Result};

/// The kernels, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    LinearVec(GpuFormat),
    /// `LinearVec` reduced with subgroup shuffles (adapters with subgroups of ≥ 8 lanes).
    LinearVecSubgroup(GpuFormat),
    LinearMat(GpuFormat),
    /// `LinearMat` with 16-row tiles, for steps of at most [`SHORT_ROWS`] rows.
    LinearMatShort(GpuFormat),
    RmsNorm,
    LayerNorm,
    Rope,
    Attention,
    Elementwise,
}

impl Kernel {
    fn source(self) -> String {
        let linear = |body: &str, f: GpuFormat| {
            format!(
                "{}\n{}\n{}",
                include_str!("linear_common.wgsl"),
                f.wgsl(),
                body
            )
        };
        match self {
            Kernel::LinearVec(f) => linear(include_str!("linear_vec.wgsl"), f),
            Kernel::LinearVecSubgroup(f) => linear(include_str!("linear_vec_subgroup.wgsl"), f),
            Kernel::LinearMat(f) => linear(include_str!("linear_mat.wgsl"), f),
            Kernel::LinearMatShort(f) => linear(include_str!("linear_mat16.wgsl"), f),
            Kernel::RmsNorm => include_str!("rmsnorm.wgsl").into(),
            Kernel::LayerNorm => include_str!("layernorm.wgsl").into(),
            Kernel::Rope => include_str!("rope.wgsl").into(),
            Kernel::Attention => include_str!("attention.wgsl").into(),
            Kernel::Elementwise => include_str!("elementwise.wgsl").into(),
        }
    }
}

/// A wgpu device and queue with the kernels compiled so far.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// Whether the decode kernels reduce with subgroup shuffles.
    pub subgroups: bool,
    pipelines: Mutex<HashMap<Kernel, Arc<wgpu::ComputePipeline>>>,
}

const NO_ADAPTER: &str = "no wgpu adapter found. On a machine without a GPU install a CPU \
    Vulkan driver (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers libvulkan1`, which \
    scripts/setup-gpu.sh does); with a GPU, install its Vulkan, Metal or DX12 driver";

impl Gpu {
    /// The highest-performance adapter wgpu finds (a discrete GPU before lavapipe), with
    /// subgroup reductions where the adapter has subgroups of at least 8 lanes.
    pub fn new() -> Result<Arc<Gpu>> {
        Self::open(true)
    }

    /// As [`Gpu::new`], always on the plain kernels (the reference for the subgroup path).
    pub fn without_subgroups() -> Result<Arc<Gpu>> {
        Self::open(false)
    }

    fn open(use_subgroups: bool) -> Result<Arc<Gpu>> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("{NO_ADAPTER} ({e})")))?;
        let info = adapter.get_info();
        let supported = adapter.limits();
        // Ask for the adapter's own storage limits: the defaults (128 MiB bindings, 8
        // storage buffers per stage) are below what large weights and attention need.
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: supported.max_storage_buffer_binding_size,
            max_buffer_size: supported.max_buffer_size,
            max_storage_buffers_per_shader_stage: supported
                .max_storage_buffers_per_shader_stage
                .min(16),
            ..wgpu::Limits::default()
        };
        // The shuffles pair lanes up to 4 apart within one row's 8 lanes: every subgroup
        // must hold whole rows.
        let subgroups = use_subgroups
            && adapter.features().contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size >= 8;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("market-engine"),
            required_features: if subgroups {
                wgpu::Features::SUBGROUP
            } else {
                wgpu::Features::empty()
            },
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("{} refused a device: {e}", info.name)))?;
        Ok(Arc::new(Gpu {
            device,
            queue,
            info,
            limits,
            subgroups,
            pipelines: Mutex::default(),
        }))
    }

    /// The batch-1 matrix-vector kernel for weights in `format`.
    fn linear_vec(&self, format: GpuFormat) -> Arc<wgpu::ComputePipeline> {
        self.pipeline(if self.subgroups {
            Kernel::LinearVecSubgroup(format)
        } else {
            Kernel::LinearVec(format)
        })
    }

    /// "name (backend, driver)", for benchmark reports and logs.
    pub fn adapter_name(&self) -> String {
        let reduce = if self.subgroups {
            format!(", subgroups of {}", self.info.subgroup_min_size)
        } else {
            String::new()
        };
        format!(
            "{} ({:?}, {} {}{reduce})",
            self.info.name, self.info.backend, self.info.driver, self.info.driver_info
        )
    }

    pub fn pipeline(&self, kernel: Kernel) -> Arc<wgpu::ComputePipeline> {
        let mut cache = self.pipelines.lock().expect("pipeline cache poisoned");
        cache
            .entry(kernel)
            .or_insert_with(|| {
                let label = format!("{kernel:?}");
                let module = self
                    .device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(&label),
                        source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
                    });
                Arc::new(
                    self.device
                        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                            label: Some(&label),
                            layout: None,
                            module: &module,
                            entry_point: Some("main"),
                            compilation_options: wgpu::PipelineCompilationOptions::default(),
                            cache: None,
                        }),
                )
            })
            .clone()
    }

    /// A storage buffer holding `data`.
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> Result<wgpu::Buffer> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if bytes.len() as u64 > self.limits.max_storage_buffer_binding_size {
            return Err(Error::Format(format!(
                "{label} is {} bytes, over this adapter's storage binding limit of {} bytes",
                bytes.len(),
                self.limits.max_storage_buffer_binding_size
            )));
        }
        // wgpu refuses empty bindings; a placeholder still needs one word.
        let contents: &[u8] = if bytes.is_empty() { &[0; 4] } else { bytes };
        Ok(self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            }))
    }

    /// A zeroed storage buffer of `floats` f32s.
    pub fn scratch(&self, label: &str, floats: usize) -> Result<wgpu::Buffer> {
        let bytes = (floats.max(1) * 4) as u64;
        if bytes > self.limits.max_storage_buffer_binding_size {
            return Err(Error::Format(format!(
                "{label} needs {bytes} bytes, over this adapter's binding limit"
            )));
        }
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(value),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    pub fn encoder(&self) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default())
    }

    pub fn bind(
        &self,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    }

    /// Submits `encoder`'s work with a copy of `floats` f32s of `src` from `offset` (in
    /// floats), and reads them back to the host.
    pub fn finish_and_read(
        &self,
        mut encoder: wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        offset: usize,
        floats: usize,
    ) -> Result<Vec<f32>> {
        let bytes = (floats * 4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        encoder.copy_buffer_to_buffer(src, (offset * 4) as u64, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("device lost while waiting: {e}")))?;
        rx.recv()
            .map_err(|_| Error::Gpu("readback never completed".into()))?
            .map_err(|e| Error::Gpu(format!("readback failed: {e}")))?;
        let out = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| Error::Gpu(format!("readback map: {e}")))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        staging.unmap();
        Ok(out)
    }
}

/// The per-step uniform every kernel reads: rows in this step and the position of the first.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Step {
    pub m: u32,
    pub pos: u32,
    pub pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LinearParams {
    n: u32,
    k: u32,
    flags: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NormParams {
    n: u32,
    eps: f32,
    pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RopeParams {
    heads: u32,
    head_dim: u32,
    flags: u32,
    row_stride: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AttentionParams {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    causal: u32,
    ctx: u32,
    scale: f32,
    pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ElementwiseParams {
    n: u32,
    op: u32,
    pad: [u32; 2],
}

/// A weight matrix on the GPU: `n` rows of `k`, in `format`.
pub struct Weight {
    pub buffer: wgpu::Buffer,
    pub format: GpuFormat,
    pub n: usize,
    pub k: usize,
}

impl Weight {
    /// Uploads a tensor already repacked by [`crate::quant::repack`].
    pub fn new(
        gpu: &Gpu,
        label: &str,
        format: GpuFormat,
        words: &[u32],
        n: usize,
        k: usize,
    ) -> Result<Weight> {
        if !k.is_multiple_of(format.row_multiple()) || !k.is_multiple_of(16) {
            return Err(Error::Format(format!(
                "{label}: rows of {k} are not a multiple of {} as the {} kernels need",
                format.row_multiple().max(16),
                format.name()
            )));
        }
        Ok(Weight {
            buffer: gpu.upload(label, words)?,
            format,
            n,
            k,
        })
    }
}

/// How many workgroups a dispatch needs for `m` rows.
#[derive(Clone, Copy, Debug)]
enum Grid {
    /// Linear layer: matrix-vector for one row, tiled matrix multiply for more.
    Linear { n: u32 },
    /// One workgroup per row.
    Rows,
    /// Rope: (pairs / 64, rows).
    Rope { pairs: u32 },
    /// Attention: (heads, rows).
    Heads { heads: u32 },
    /// Element-wise over rows of n, 256 per workgroup.
    Elements { n: u32 },
    /// One workgroup per row, exactly this many rows.
    FixedRows(u32),
}

/// Steps of at most this many rows run linear layers on 16-row tiles.
pub const SHORT_ROWS: u32 = 16;

struct Dispatch {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind: wgpu::BindGroup,
    /// For linear layers: the matrix-vector kernel used when a step has one row.
    single: Option<(Arc<wgpu::ComputePipeline>, wgpu::BindGroup)>,
    /// For linear layers: the 16-row tiled kernel used for steps of 2 to `SHORT_ROWS` rows.
    short: Option<(Arc<wgpu::ComputePipeline>, wgpu::BindGroup)>,
    grid: Grid,
}

/// A forward pass recorded once: a list of dispatches over fixed buffers.
pub struct Program {
    gpu: Arc<Gpu>,
    pub step: wgpu::Buffer,
    dispatches: Vec<Dispatch>,
}

/// A buffer that may stand for "none" (an unused binding).
#[derive(Clone, Copy)]
pub struct Bias<'a>(pub Option<&'a wgpu::Buffer>);

impl Program {
    pub fn new(gpu: &Arc<Gpu>) -> Program {
        let step = gpu.uniform(
            "step",
            &Step {
                m: 0,
                pos: 0,
                pad: [0; 2],
            },
        );
        Program {
            gpu: gpu.clone(),
            step,
            dispatches: Vec::new(),
        }
    }

    /// `y = x · Wᵀ (+ bias) (+ y)`; `at_pos` writes rows at the step's position.
    pub fn linear(
        &mut self,
        x: &wgpu::Buffer,
        w: &Weight,
        bias: Bias,
        y: &wgpu::Buffer,
        accumulate: bool,
        at_pos: bool,
    ) {
        let flags =
            u32::from(bias.0.is_some()) | (u32::from(accumulate) << 1) | (u32::from(at_pos) << 2);
        let params = self.gpu.uniform(
            "linear",
            &LinearParams {
                n: w.n as u32,
                k: w.k as u32,
                flags,
                pad: 0,
            },
        );
        let placeholder;
        let bias = if let Some(b) = bias.0 {
            b
        } else {
            placeholder = self.gpu.scratch("no-bias", 1).expect("one word fits");
            &placeholder
        };
        let buffers = [x, &w.buffer, bias, y, &params, &self.step];
        let vec = self.gpu.linear_vec(w.format);
        let mat = self.gpu.pipeline(Kernel::LinearMat(w.format));
        let short = self.gpu.pipeline(Kernel::LinearMatShort(w.format));
        let single = Some((vec.clone(), self.gpu.bind(&vec, &buffers)));
        let short = Some((short.clone(), self.gpu.bind(&short, &buffers)));
        let bind = self.gpu.bind(&mat, &buffers);
        self.dispatches.push(Dispatch {
            pipeline: mat,
            bind,
            single,
            short,
            grid: Grid::Linear { n: w.n as u32 },
        });
    }

    /// Linear layer always run as matrix-vector on the first row (logits of the last token).
    pub fn linear_one(&mut self, x: &wgpu::Buffer, w: &Weight, y: &wgpu::Buffer) {
        let params = self.gpu.uniform(
            "linear",
            &LinearParams {
                n: w.n as u32,
                k: w.k as u32,
                flags: 0,
                pad: 0,
            },
        );
        let placeholder = self.gpu.scratch("no-bias", 1).expect("one word fits");
        let vec = self.gpu.linear_vec(w.format);
        let bind = self
            .gpu
            .bind(&vec, &[x, &w.buffer, &placeholder, y, &params, &self.step]);
        self.dispatches.push(Dispatch {
            pipeline: vec,
            bind,
            single: None,
            short: None,
            grid: Grid::Linear { n: w.n as u32 },
        });
    }

    pub fn rmsnorm(
        &mut self,
        x: &wgpu::Buffer,
        g: &wgpu::Buffer,
        y: &wgpu::Buffer,
        n: usize,
        eps: f32,
        rows: Option<u32>,
    ) {
        let params = self.gpu.uniform(
            "rmsnorm",
            &NormParams {
                n: n as u32,
                eps,
                pad: [0; 2],
            },
        );
        let pipeline = self.gpu.pipeline(Kernel::RmsNorm);
        let bind = self.gpu.bind(&pipeline, &[x, g, y, &params, &self.step]);
        let grid = rows.map_or(Grid::Rows, Grid::FixedRows);
        self.dispatches.push(Dispatch {
            pipeline,
            bind,
            single: None,
            short: None,
            grid,
        });
    }

    pub fn layernorm(
        &mut self,
        x: &wgpu::Buffer,
        g: &wgpu::Buffer,
        b: &wgpu::Buffer,
        n: usize,
        eps: f32,
    ) {
        let params = self.gpu.uniform(
            "layernorm",
            &NormParams {
                n: n as u32,
                eps,
                pad: [0; 2],
            },
        );
        let pipeline = self.gpu.pipeline(Kernel::LayerNorm);
        let bind = self.gpu.bind(&pipeline, &[x, g, b, &params, &self.step]);
        self.dispatches.push(Dispatch {
            pipeline,
            bind,
            single: None,
            short: None,
            grid: Grid::Rows,
        });
    }

    /// Rotates rows of `t` (stride `row_stride` floats) in place.
    #[allow(clippy::too_many_arguments)]
    pub fn rope(
        &mut self,
        t: &wgpu::Buffer,
        table: &wgpu::Buffer,
        heads: usize,
        head_dim: usize,
        row_stride: usize,
        interleaved: bool,
        at_pos: bool,
    ) {
        let flags = u32::from(interleaved) | (u32::from(at_pos) << 1);
        let params = self.gpu.uniform(
            "rope",
            &RopeParams {
                heads: heads as u32,
                head_dim: head_dim as u32,
                flags,
                row_stride: row_stride as u32,
            },
        );
        let pipeline = self.gpu.pipeline(Kernel::Rope);
        let bind = self.gpu.bind(&pipeline, &[t, table, &params, &self.step]);
        let pairs = (heads * head_dim / 2) as u32;
        self.dispatches.push(Dispatch {
            pipeline,
            bind,
            single: None,
            short: None,
            grid: Grid::Rope { pairs },
        });
    }

    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &mut self,
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        o: &wgpu::Buffer,
        scores: &wgpu::Buffer,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        causal: bool,
        ctx: usize,
    ) {
        let params = self.gpu.uniform(
            "attention",
            &AttentionParams {
                heads: heads as u32,
                kv_heads: kv_heads as u32,
                head_dim: head_dim as u32,
                causal: u32::from(causal),
                ctx: ctx as u32,
                scale: 1.0 / (head_dim as f32).sqrt(),
                pad: [0; 2],
            },
        );
        let pipeline = self.gpu.pipeline(Kernel::Attention);
        let bind = self
            .gpu
            .bind(&pipeline, &[q, k, v, o, scores, &params, &self.step]);
        self.dispatches.push(Dispatch {
            pipeline,
            bind,
            single: None,
            short: None,
            grid: Grid::Heads {
                heads: heads as u32,
            },
        });
    }

    /// `a = silu(a) * b` over rows of `n`.
    pub fn silu_mul(&mut self, a: &wgpu::Buffer, b: &wgpu::Buffer, n: usize) {
        self.elementwise(a, b, n, 0);
    }

    /// `a = gelu(a)` over rows of `n`.
    pub fn gelu(&mut self, a: &wgpu::Buffer, n: usize) {
        let unused = self.gpu.scratch("unused", 1).expect("one word fits");
        self.elementwise(a, &unused, n, 1);
    }

    fn elementwise(&mut self, a: &wgpu::Buffer, b: &wgpu::Buffer, n: usize, op: u32) {
        let params = self.gpu.uniform(
            "elementwise",
            &ElementwiseParams {
                n: n as u32,
                op,
                pad: [0; 2],
            },
        );
        let pipeline = self.gpu.pipeline(Kernel::Elementwise);
        let bind = self.gpu.bind(&pipeline, &[a, b, &params, &self.step]);
        self.dispatches.push(Dispatch {
            pipeline,
            bind,
            single: None,
            short: None,
            grid: Grid::Elements { n: n as u32 },
        });
    }

    /// Encodes every dispatch for a step of `m` rows starting at position `pos`, in one
    /// compute pass. The caller writes nothing else between this and the submission.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder, m: usize, pos: usize) {
        self.gpu.queue.write_buffer(
            &self.step,
            0,
            bytemuck::bytes_of(&Step {
                m: m as u32,
                pos: pos as u32,
                pad: [0; 2],
            }),
        );
        let m = m as u32;
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        for d in &self.dispatches {
            // One arm per kernel variant, though two bind the same way.
            #[allow(clippy::match_same_arms)]
            let (pipeline, bind) = match (&d.single, &d.short, m) {
                (Some((p, b)), _, 1) => (p, b),
                (_, Some((p, b)), 2..=SHORT_ROWS) => (p, b),
                _ => (&d.pipeline, &d.bind),
            };
            let (x, y) = match d.grid {
                Grid::Linear { n } if m == 1 || d.single.is_none() => {
                    let groups = n.div_ceil(8);
                    (groups.min(32768), groups.div_ceil(32768))
                }
                Grid::Linear { n } if m <= SHORT_ROWS => (n.div_ceil(64), 1),
                Grid::Linear { n } => (n.div_ceil(64), m.div_ceil(64)),
                Grid::Rows => (m, 1),
                Grid::FixedRows(rows) => (rows, 1),
                Grid::Rope { pairs } => (pairs.div_ceil(64), m),
                Grid::Heads { heads } => (heads, m),
                Grid::Elements { n } => {
                    let groups = (m * n).div_ceil(256);
                    (groups.min(32768), groups.div_ceil(32768))
                }
            };
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, bind, &[]);
            pass.dispatch_workgroups(x, y, 1);
        }
    }
}
