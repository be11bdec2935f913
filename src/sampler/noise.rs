//! Names for the noise draws of a run. Every draw is keyed by the sample's seed and one stream
//! word that packs what the draw is for, the step it belongs to and its index within the step, so
//! two different draws of a run can never share noise.

use crate::error::{Error, Result};

/// What a draw is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The starting noise of a run (stream 0: the seed's latent).
    Start = 0,
    /// The noise of a predictor step (DDPM, DDIM with eta > 0, Euler-Maruyama).
    Step = 1,
    /// A Langevin corrector step of predictor-corrector sampling.
    Corrector = 2,
    /// A Langevin step of annealed Langevin dynamics.
    Langevin = 3,
    /// The data noised to the current time in the known region of an inpainting.
    Known = 4,
    /// RePaint's jump back up to a noisier time.
    Renoise = 5,
    /// The Hutchinson probe of the likelihood.
    Probe = 6,
}

/// One draw: `role` (4 bits), `step` (20 bits), `k` (8 bits) in one 32-bit stream word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NoiseKey {
    pub role: Role,
    pub step: usize,
    pub k: usize,
}

impl NoiseKey {
    pub const START: NoiseKey = NoiseKey {
        role: Role::Start,
        step: 0,
        k: 0,
    };
    const STEP_BITS: u32 = 20;
    const K_BITS: u32 = 8;

    pub fn new(role: Role, step: usize, k: usize) -> NoiseKey {
        NoiseKey { role, step, k }
    }

    /// The stream word; an error (never a wrap onto another draw) when a field does not fit.
    pub fn stream(self) -> Result<u32> {
        if self.step >= 1 << Self::STEP_BITS || self.k >= 1 << Self::K_BITS {
            return Err(Error::Param {
                name: "steps".into(),
                detail: format!(
                    "noise draw {self:?} is beyond {} steps of {} draws",
                    1 << Self::STEP_BITS,
                    1 << Self::K_BITS
                ),
            });
        }
        Ok((self.role as u32) << (Self::STEP_BITS + Self::K_BITS)
            | (self.step as u32) << Self::K_BITS
            | self.k as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_distinct_and_checked() {
        assert_eq!(NoiseKey::START.stream().unwrap(), 0);
        let roles = [
            Role::Start,
            Role::Step,
            Role::Corrector,
            Role::Langevin,
            Role::Known,
            Role::Renoise,
            Role::Probe,
        ];
        let mut seen = std::collections::HashSet::new();
        for role in roles {
            for step in [0, 1, 2, 255, 256, (1 << 20) - 1] {
                for k in [0, 1, 15, 16, 99, 255] {
                    assert!(
                        seen.insert(NoiseKey::new(role, step, k).stream().unwrap()),
                        "{role:?} {step} {k}"
                    );
                }
            }
        }
        assert!(NoiseKey::new(Role::Step, 1 << 20, 0).stream().is_err());
        assert!(NoiseKey::new(Role::Corrector, 0, 256).stream().is_err());
    }
}
