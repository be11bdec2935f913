//! The DDPM-style U-Net of `train/nets.py`, built from the config (levels, blocks per level,
//! attention resolutions), in NHWC.

use crate::backend::{Backend, Channels};
use crate::error::Result;

use super::layers::{
    read_linear, Conv, Linear, Norm, TensorSource, TimeClassEmbedding, UpsampleConv,
};
use super::Taps;

/// Hyper-parameters of the U-Net, from `Arch::Unet`.
pub struct UNetShape<'a> {
    pub in_ch: usize,
    pub base: usize,
    pub mults: &'a [usize],
    pub num_res: usize,
    pub attn_res: &'a [usize],
    pub image_size: usize,
    pub num_classes: usize,
    pub groups: usize,
    pub norm_eps: f32,
    pub time_scale: f32,
}

struct ResBlock<B: Backend> {
    norm1: Norm<B>,
    conv1: Conv<B>,
    /// First column of this block's time-embedding projection in [`TembProjections`]' product.
    temb_offset: usize,
    norm2: Norm<B>,
    conv2: Conv<B>,
    skip: Option<Conv<B>>,
}

impl<B: Backend> ResBlock<B> {
    fn load(
        be: &mut B,
        src: &mut TensorSource,
        name: &str,
        cin: usize,
        cout: usize,
        temb: &mut TembProjections,
        s: &UNetShape,
    ) -> Result<Self> {
        Ok(ResBlock {
            norm1: Norm::load(be, src, &format!("{name}.norm1"), cin, s.groups, s.norm_eps)?,
            conv1: Conv::load(be, src, &format!("{name}.conv1"), cin, cout, 3, 1)?,
            temb_offset: temb.add(src, &format!("{name}.temb"), cout)?,
            norm2: Norm::load(
                be,
                src,
                &format!("{name}.norm2"),
                cout,
                s.groups,
                s.norm_eps,
            )?,
            conv2: Conv::load(be, src, &format!("{name}.conv2"), cout, cout, 3, 1)?,
            skip: if cin != cout {
                Some(Conv::load(
                    be,
                    src,
                    &format!("{name}.skip"),
                    cin,
                    cout,
                    1,
                    1,
                )?)
            } else {
                None
            },
        })
    }

    /// `conv2(silu(norm2(conv1(silu(norm1(x))) + temb))) + skip(x)`; the time embedding's
    /// projection (this block's columns of `temb_proj`) is added inside the second GroupNorm.
    /// On the upsampling path x is the pair `[h, skip]`.
    fn forward(
        &self,
        be: &mut B,
        x: &Channels<B::Tensor>,
        temb_proj: &B::Tensor,
    ) -> Result<B::Tensor> {
        let h = self.norm1.forward(be, x, None, true)?;
        let h = self.conv1.forward(be, &h)?;
        let h = self.norm2.forward(
            be,
            &Channels::One(h),
            Some((temb_proj, self.temb_offset)),
            true,
        )?;
        match &self.skip {
            Some(skip) => self.conv2.forward_skip(be, &h, x, skip),
            None => {
                let x = be.joined(x)?;
                self.conv2.forward_add(be, &h, &x)
            }
        }
    }
}

/// The time-embedding projections of every residual block, gathered at load into one linear
/// layer (weights side by side), so an evaluation computes them all in one product and each block
/// reads its own columns.
struct TembProjections {
    dim: usize,
    blocks: Vec<(Vec<f32>, Vec<f32>, usize)>,
    width: usize,
}

impl TembProjections {
    fn new(dim: usize) -> Self {
        TembProjections {
            dim,
            blocks: Vec::new(),
            width: 0,
        }
    }

    /// Reads one block's projection; returns its first column in the joint product.
    fn add(&mut self, src: &mut TensorSource, name: &str, cout: usize) -> Result<usize> {
        let (wt, b) = read_linear(src, name, self.dim, cout)?;
        let offset = self.width;
        self.blocks.push((wt, b, cout));
        self.width += cout;
        Ok(offset)
    }

    fn upload<B: Backend>(self, be: &mut B) -> Result<Linear<B>> {
        let mut wt = Vec::with_capacity(self.dim * self.width);
        for i in 0..self.dim {
            for (w, _, cout) in &self.blocks {
                wt.extend_from_slice(&w[i * cout..(i + 1) * cout]);
            }
        }
        let b: Vec<f32> = self.blocks.iter().flat_map(|(_, b, _)| b.clone()).collect();
        Linear::upload(be, &wt, &b, self.dim, self.width)
    }
}

struct AttnBlock<B: Backend> {
    norm: Norm<B>,
    qkv: Linear<B>,
    proj: Linear<B>,
}

impl<B: Backend> AttnBlock<B> {
    fn load(
        be: &mut B,
        src: &mut TensorSource,
        name: &str,
        c: usize,
        s: &UNetShape,
    ) -> Result<Self> {
        Ok(AttnBlock {
            norm: Norm::load(be, src, &format!("{name}.norm"), c, s.groups, s.norm_eps)?,
            qkv: Linear::load(be, src, &format!("{name}.qkv"), c, 3 * c)?,
            proj: Linear::load(be, src, &format!("{name}.proj"), c, c)?,
        })
    }

    fn forward(&self, be: &mut B, x: &B::Tensor) -> Result<B::Tensor> {
        let xn = self
            .norm
            .forward(be, &Channels::One(x.clone()), None, false)?;
        let (qw, qb) = self.qkv.tensors();
        let (pw, pb) = self.proj.tensors();
        be.attention(&xn, qw, qb, pw, pb, Some(x))
    }
}

/// A residual block, then attention where the level's resolution is listed in `attn_res`.
/// `R`: the resampling after the blocks, a stride-2 conv going down, nearest-2x + conv going up.
struct Stage<B: Backend, R> {
    blocks: Vec<(ResBlock<B>, Option<AttnBlock<B>>)>,
    resample: Option<R>,
}

pub struct UNet<B: Backend> {
    embed: TimeClassEmbedding<B>,
    conv_in: Conv<B>,
    down: Vec<Stage<B, Conv<B>>>,
    mid_res1: ResBlock<B>,
    mid_attn: AttnBlock<B>,
    mid_res2: ResBlock<B>,
    /// Indexed by level, like `down`; run from the deepest level up.
    up: Vec<Stage<B, UpsampleConv<B>>>,
    norm_out: Norm<B>,
    conv_out: Conv<B>,
    /// Every residual block's time-embedding projection, as one layer.
    temb_proj: Linear<B>,
}

impl<B: Backend> UNet<B> {
    pub fn load(be: &mut B, src: &mut TensorSource, s: &UNetShape) -> Result<Self> {
        let temb = 4 * s.base;
        let embed = TimeClassEmbedding::load(be, src, s.base, temb, s.num_classes, s.time_scale)?;
        let mut projections = TembProjections::new(temb);
        let conv_in = Conv::load(be, src, "conv_in", s.in_ch, s.base, 3, 1)?;
        let attn_at = |res: usize| s.attn_res.contains(&res);
        let mut skips = vec![s.base];
        let (mut ch, mut res) = (s.base, s.image_size);
        let mut down = Vec::new();
        for (level, &m) in s.mults.iter().enumerate() {
            let mut blocks = Vec::new();
            for i in 0..s.num_res {
                let name = format!("down.{level}");
                let rb = ResBlock::load(
                    be,
                    src,
                    &format!("{name}.res.{i}"),
                    ch,
                    s.base * m,
                    &mut projections,
                    s,
                )?;
                ch = s.base * m;
                let at = if attn_at(res) {
                    Some(AttnBlock::load(
                        be,
                        src,
                        &format!("{name}.attn.{i}"),
                        ch,
                        s,
                    )?)
                } else {
                    None
                };
                blocks.push((rb, at));
                skips.push(ch);
            }
            let resample = if level + 1 < s.mults.len() {
                skips.push(ch);
                res /= 2;
                Some(Conv::load(
                    be,
                    src,
                    &format!("down.{level}.downsample"),
                    ch,
                    ch,
                    3,
                    2,
                )?)
            } else {
                None
            };
            down.push(Stage { blocks, resample });
        }
        let mid_res1 = ResBlock::load(be, src, "mid_res1", ch, ch, &mut projections, s)?;
        let mid_attn = AttnBlock::load(be, src, "mid_attn", ch, s)?;
        let mid_res2 = ResBlock::load(be, src, "mid_res2", ch, ch, &mut projections, s)?;
        let mut up: Vec<Stage<B, UpsampleConv<B>>> = Vec::new();
        for (level, &m) in s.mults.iter().enumerate().rev() {
            let mut blocks = Vec::new();
            for i in 0..=s.num_res {
                let name = format!("up.{level}");
                let skip = skips.pop().expect("one skip per down block");
                let rb = ResBlock::load(
                    be,
                    src,
                    &format!("{name}.res.{i}"),
                    ch + skip,
                    s.base * m,
                    &mut projections,
                    s,
                )?;
                ch = s.base * m;
                let at = if attn_at(res) {
                    Some(AttnBlock::load(
                        be,
                        src,
                        &format!("{name}.attn.{i}"),
                        ch,
                        s,
                    )?)
                } else {
                    None
                };
                blocks.push((rb, at));
            }
            let resample = if level != 0 {
                res *= 2;
                Some(UpsampleConv::load(
                    be,
                    src,
                    &format!("up.{level}.upsample"),
                    ch,
                )?)
            } else {
                None
            };
            up.insert(0, Stage { blocks, resample });
        }
        let norm_out = Norm::load(be, src, "norm_out", ch, s.groups, s.norm_eps)?;
        let conv_out = Conv::load(be, src, "conv_out", ch, s.in_ch, 3, 1)?;
        Ok(UNet {
            embed,
            conv_in,
            down,
            mid_res1,
            mid_attn,
            mid_res2,
            up,
            norm_out,
            conv_out,
            temb_proj: projections.upload(be)?,
        })
    }

    /// eps for x `[n, h, w, c]`, t `[n]`, labels `[n]`.
    pub fn forward(
        &self,
        be: &mut B,
        x: &B::Tensor,
        t: &B::Tensor,
        labels: &B::Tensor,
        mut taps: Option<&mut Taps<B>>,
    ) -> Result<B::Tensor> {
        let temb = self.embed.forward(be, t, labels)?;
        let temb_proj = self.temb_proj.forward(be, &temb)?;
        let mut h = self.conv_in.forward(be, x)?;
        let mut skips = vec![h.clone()];
        for stage in &self.down {
            for (rb, at) in &stage.blocks {
                h = rb.forward(be, &Channels::One(h), &temb_proj)?;
                if let Some(at) = at {
                    h = at.forward(be, &h)?;
                }
                skips.push(h.clone());
            }
            if let Some(conv) = &stage.resample {
                h = conv.forward(be, &h)?;
                skips.push(h.clone());
            }
        }
        tap::<B>(&mut taps, "down_out", &h);
        h = self.mid_res1.forward(be, &Channels::One(h), &temb_proj)?;
        h = self.mid_attn.forward(be, &h)?;
        h = self.mid_res2.forward(be, &Channels::One(h), &temb_proj)?;
        tap::<B>(&mut taps, "mid_out", &h);
        for stage in self.up.iter().rev() {
            for (rb, at) in &stage.blocks {
                let skip = skips.pop().expect("one skip per up block");
                let pair = be.channel_pair(&h, &skip)?;
                h = rb.forward(be, &pair, &temb_proj)?;
                if let Some(at) = at {
                    h = at.forward(be, &h)?;
                }
            }
            if let Some(conv) = &stage.resample {
                h = conv.forward(be, &h)?;
            }
        }
        tap::<B>(&mut taps, "temb", &temb);
        tap::<B>(&mut taps, "up_out", &h);
        let h = self.norm_out.forward(be, &Channels::One(h), None, true)?;
        self.conv_out.forward(be, &h)
    }
}

pub(super) fn tap<B: Backend>(taps: &mut Option<&mut Taps<B>>, name: &str, t: &B::Tensor) {
    if let Some(taps) = taps.as_deref_mut() {
        taps.push((name.to_string(), t.clone()));
    }
}
