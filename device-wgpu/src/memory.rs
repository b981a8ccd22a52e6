//! Device memory: the buffer pool (each buffer back after its last reader), scratch buffers
//! and textures, uploads, and the high-water mark.

use crate::{convert, WgpuDevice};
use sfumato_core::{Error, Result, Tensor};
use sfumato_shaders::STAGE_LINEAR_WIDTH;
use std::sync::Arc;
use wgpu::util::DeviceExt;

pub(crate) const POOL_MAX: usize = 64;

/// Bytes a binding of a tensor of `bytes` takes: at least 16, a multiple of 16 (vec4 views).
pub(crate) fn binding_size(bytes: u64) -> u64 {
    bytes.max(16).div_ceil(16) * 16
}

impl WgpuDevice {
    /// Drop pooled buffers, freeing their memory.
    pub(crate) fn drain_pool(&mut self) {
        for (s, _) in self.pool.drain(..) {
            self.allocated -= s;
        }
    }

    /// A scratch texture of `width` x `height` texels, or an error where a side is over the
    /// adapter's limit (wgpu would panic).
    pub(crate) fn scratch_texture(&self, width: usize, height: usize) -> Result<wgpu::TextureView> {
        let side = self.limits.max_texture_dimension_2d as usize;
        if width > side || height > side {
            return Err(Error::Device(format!(
                "a {width} x {height} texture is over this adapter's {side} texels a side"
            )));
        }
        Ok(self
            .device
            .create_texture(&rgba32_texture(
                "sfumato scratch",
                width.max(1) as u32,
                height.max(1) as u32,
            ))
            .create_view(&Default::default()))
    }

    pub(crate) fn scratch(&self, bytes: u64) -> Arc<wgpu::Buffer> {
        Arc::new(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sfumato scratch"),
            size: binding_size(bytes),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
            mapped_at_creation: false,
        }))
    }

    /// A storage buffer of at least `bytes`, from the pool when one fits.
    pub(crate) fn acquire(&mut self, bytes: u64) -> Arc<wgpu::Buffer> {
        let need = binding_size(bytes);
        let best = self
            .pool
            .iter()
            .enumerate()
            .filter(|(_, (s, _))| *s >= need && *s <= need.saturating_mul(2).max(need + 4096))
            .min_by_key(|(_, (s, _))| *s)
            .map(|(i, _)| i);
        if let Some(i) = best {
            return self.pool.swap_remove(i).1;
        }
        self.allocated += need;
        self.high_water = self.high_water.max(self.allocated);
        Arc::new(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sfumato tensor"),
            size: need,
            // Uniform too: the `ubo` matmul binds row blocks of its A operand as uniforms.
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    pub(crate) fn release(&mut self, b: Arc<wgpu::Buffer>) {
        if Arc::strong_count(&b) == 1 {
            if self.pool.len() >= POOL_MAX {
                let (s, _) = self.pool.remove(0);
                self.allocated -= s;
            }
            self.pool.push((b.size(), b));
        }
    }

    /// Upload a constant f32 tensor as an rgba32float texture of its rows (the last dimension
    /// over 4 texels wide); returns the view and the bytes it holds.
    pub(crate) fn upload_texture(
        &mut self,
        t: &Tensor,
        what: &str,
    ) -> Result<(wgpu::TextureView, u64)> {
        // An f16 constant as rgba16float: half the bytes, exact, and read by the same
        // `textureLoad` (a float texture's texels are f32 in the shader).
        let (half, bytes) = match t.data() {
            sfumato_core::TensorData::F16(v) => (true, f16_bytes(v)),
            _ => (false, convert::to_device_bytes(t, what)?),
        };
        let cols = t.shape().dims().last().copied().unwrap_or(1);
        let rows = t.shape().numel() / cols.max(1);
        let side = self.limits.max_texture_dimension_2d as usize;
        if !cols.is_multiple_of(4) || cols / 4 > side || rows > side || cols == 0 {
            return Err(Error::Device(format!(
                "constant '{what}' of shape {} does not fit a texture of at most {side} texels a side",
                t.shape()
            )));
        }
        let tex = self.device.create_texture_with_data(
            &self.queue,
            &wgpu::TextureDescriptor {
                format: if half {
                    wgpu::TextureFormat::Rgba16Float
                } else {
                    wgpu::TextureFormat::Rgba32Float
                },
                ..rgba32_texture(what, (cols / 4) as u32, rows as u32)
            },
            wgpu::util::TextureDataOrder::LayerMajor,
            &bytes,
        );
        let n = bytes.len() as u64;
        self.allocated += n;
        self.high_water = self.high_water.max(self.allocated);
        Ok((tex.create_view(&Default::default()), n))
    }

    /// The staging texture of a prepared graph (`Buf::Stage`): an rgba32float 2-d array that
    /// kernels write as storage and read as a texture, `width` x `height` texels a layer, or an
    /// error where it is over the adapter's limits; copies write it too (`Buf::StageLinear`).
    /// Returns it and its bytes.
    pub(crate) fn stage_texture(
        &mut self,
        width: u32,
        height: u32,
        layers: u32,
        format: wgpu::TextureFormat,
    ) -> Result<(Stage, u64)> {
        let side = self.limits.max_texture_dimension_2d;
        let max_layers = self.limits.max_texture_array_layers;
        if width > side || height > side || layers > max_layers {
            return Err(Error::Device(format!(
                "a staging texture of {width} x {height} texels and {layers} layers is over this \
                 adapter's {side} texels a side or {max_layers} layers"
            )));
        }
        let tex = self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("sfumato stage"),
            size: wgpu::Extent3d {
                width: width.max(1),
                height: height.max(1),
                depth_or_array_layers: layers.max(1),
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage: if format == wgpu::TextureFormat::Rgba32Float {
                wgpu::TextureUsages::TEXTURE_BINDING
                    | wgpu::TextureUsages::STORAGE_BINDING
                    | wgpu::TextureUsages::COPY_DST
            } else {
                // The f16 stage only receives copies (`Buf::StageLinear` of f16 tensors).
                wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST
            },
            view_formats: &[],
        });
        let view = tex.create_view(&wgpu::TextureViewDescriptor {
            dimension: Some(wgpu::TextureViewDimension::D2Array),
            ..Default::default()
        });
        let texel = format.block_copy_size(None).unwrap_or(16) as u64;
        let n = width.max(1) as u64 * height.max(1) as u64 * layers.max(1) as u64 * texel;
        self.allocated += n;
        self.high_water = self.high_water.max(self.allocated);
        Ok((Stage { texture: tex, view }, n))
    }

    /// Upload a tensor to a new buffer; `half`: an f16 tensor stored as f16.
    pub(crate) fn upload(
        &mut self,
        t: &Tensor,
        what: &str,
        half: bool,
    ) -> Result<Arc<wgpu::Buffer>> {
        let bytes: Vec<u8> = match t.data() {
            sfumato_core::TensorData::F16(v) if half => f16_bytes(v),
            _ => convert::to_device_bytes(t, what)?,
        };
        Ok(self.upload_bytes(bytes))
    }

    /// A buffer holding `bytes` (padded to whole 4-byte words).
    pub(crate) fn upload_bytes(&mut self, mut bytes: Vec<u8>) -> Arc<wgpu::Buffer> {
        // Writes move whole 4-byte words (an odd count of f16 leaves 2 bytes over).
        bytes.resize(bytes.len().next_multiple_of(4), 0);
        let buf = self.acquire(bytes.len() as u64);
        if !bytes.is_empty() {
            self.queue.write_buffer(&buf, 0, &bytes);
        }
        buf
    }
}

/// f16 values' bytes as the device stores them.
fn f16_bytes(v: &[half::f16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect()
}

/// The staging texture (`Buf::Stage`, `Buf::StageLinear`): the texture, for copies into it, and
/// its view as a 2-d array, for bindings.
#[derive(Clone, Debug)]
pub(crate) struct Stage {
    pub(crate) texture: wgpu::Texture,
    pub(crate) view: wgpu::TextureView,
}

impl Stage {
    /// Copies the first `texels` x 16 bytes of `buf` into layer `layer` (`Buf::StageLinear`).
    pub(crate) fn copy_linear(
        &self,
        enc: &mut wgpu::CommandEncoder,
        buf: &wgpu::Buffer,
        texels: u32,
        layer: u32,
    ) {
        copy_linear(enc, buf, &self.texture, texels, layer);
    }
}

/// Copies the first `texels` texels' bytes (16 each; 8 for an rgba16float texture) of `buf`
/// into layer `layer` of `texture`, in order, [`STAGE_LINEAR_WIDTH`] texels a row (`Buf::StageLinear`'s layout): the
/// whole rows, then the part of the last.
pub fn copy_linear(
    enc: &mut wgpu::CommandEncoder,
    buf: &wgpu::Buffer,
    texture: &wgpu::Texture,
    texels: u32,
    layer: u32,
) {
    let w = STAGE_LINEAR_WIDTH;
    // 16 bytes a texel (rgba32float), 8 for the f16 stage (rgba16float).
    let tb = texture.format().block_copy_size(None).unwrap_or(16);
    let (full, rest) = (texels / w, texels % w);
    for (row, width, height) in [(0, w, full), (full, rest, 1)] {
        if width == 0 || height == 0 {
            continue;
        }
        enc.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer: buf,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: row as u64 * w as u64 * tb as u64,
                    bytes_per_row: Some(w * tb),
                    rows_per_image: None,
                },
            },
            wgpu::TexelCopyTextureInfo {
                texture,
                mip_level: 0,
                origin: wgpu::Origin3d {
                    x: 0,
                    y: row,
                    z: layer,
                },
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
        );
    }
}

/// An rgba32float texture a kernel samples with `textureLoad`, `width` x `height` texels (the
/// layout of a constant weight read as a texture; the labs use it too).
pub fn rgba32_texture(label: &str, width: u32, height: u32) -> wgpu::TextureDescriptor<'_> {
    wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Float,
        usage: wgpu::TextureUsages::TEXTURE_BINDING,
        view_formats: &[],
    }
}
