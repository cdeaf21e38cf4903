//! What a new run may be asked to do: every setting of a [`TrainConfig`] checked before anything is
//! written or allocated, each refusal naming the setting and its allowed range.

use crate::TrainError;
use chestx_infer::score::columns_of;
use chestx_infer::TrainConfig;
use chestx_model::{Arch, Loss, Pooling};

/// Largest input side accepted: a 4096² film batch of 16 already needs 3 GB for its pixels alone.
pub const MAX_INPUT: i64 = 4096;
/// Smallest input side: a stride-32 backbone needs at least one cell.
pub const MIN_INPUT: i64 = 32;

/// Check a new run's configuration.
pub fn validate(c: &TrainConfig) -> Result<(), TrainError> {
    if c.model.classes.is_empty() {
        return Err(TrainError::Config("no classes to train".into()));
    }
    columns_of(&c.model.classes)?;
    validate_settings(c)
}

/// Every check of [`validate`] but the classes (which may be read from the dataset later): the
/// command line runs it before opening the dataset.
pub fn validate_settings(c: &TrainConfig) -> Result<(), TrainError> {
    let bad = |m: String| Err(TrainError::Config(m));
    let m = &c.model;
    if !(MIN_INPUT..=MAX_INPUT).contains(&m.input_size) {
        return bad(format!(
            "input side {} px is outside {MIN_INPUT}..={MAX_INPUT}",
            m.input_size
        ));
    }
    if !(1..=65536).contains(&m.transition_dim) {
        return bad(format!(
            "transition dim {} is outside 1..=65536",
            m.transition_dim
        ));
    }
    if m.transition_kernel < 1 || m.transition_kernel % 2 == 0 || m.transition_kernel > 7 {
        return bad("the transition kernel must be 1, 3, 5 or 7".into());
    }
    if ![8, 16, 32].contains(&m.output_stride) {
        return bad(format!(
            "output stride {} is not 8, 16 or 32",
            m.output_stride
        ));
    }
    if m.output_stride != 32 && !m.arch.is_resnet() {
        return bad("output stride 8 and 16 apply to ResNets only".into());
    }
    if m.in_channels != m.preprocess.channels() as i64 {
        return bad(format!(
            "the network takes {} input channel(s) but its preprocessing makes {}",
            m.in_channels,
            m.preprocess.channels()
        ));
    }
    validate_width(c)?;
    if let Pooling::Lse { r } = m.pooling {
        if !(r.is_finite() && r > 0.0) {
            return bad(format!("LSE sharpness r must be positive, not {r}"));
        }
    }
    if let Loss::Focal { gamma } = c.loss {
        if !(gamma.is_finite() && gamma >= 0.0) {
            return bad(format!("focal gamma must be ≥ 0, not {gamma}"));
        }
    }
    validate_schedule(c)
}

fn validate_width(c: &TrainConfig) -> Result<(), TrainError> {
    let m = &c.model;
    let Some(w) = m.width else { return Ok(()) };
    if m.arch != Arch::Resnet18 {
        return Err(TrainError::Config(
            "--width applies to resnet18 only".into(),
        ));
    }
    if !(1..=512).contains(&w) {
        return Err(TrainError::Config(format!("width {w} is outside 1..=512")));
    }
    Ok(())
}

fn validate_schedule(c: &TrainConfig) -> Result<(), TrainError> {
    let bad = |m: String| Err(TrainError::Config(m));
    if c.batch_size == 0 || c.batch_size > 4096 {
        return bad(format!("batch size {} is outside 1..=4096", c.batch_size));
    }
    if c.epochs == 0 {
        return bad("epochs must be at least 1".into());
    }
    if !(c.lr.is_finite() && c.lr > 0.0) {
        return bad(format!("learning rate {} must be positive", c.lr));
    }
    if !(c.weight_decay.is_finite() && c.weight_decay >= 0.0) {
        return bad(format!("weight decay must be ≥ 0, not {}", c.weight_decay));
    }
    if let Err(msg) = chestx_data::check_val_fraction(c.val_fraction) {
        return bad(msg);
    }
    if c.checkpoint_every == 0 {
        return bad("checkpoint interval must be at least 1 step".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chestx_model::ModelConfig;

    fn ok() -> TrainConfig {
        let mut model = ModelConfig::new(Arch::Resnet18, vec!["Mass".into()]);
        model.width = Some(16);
        model.input_size = 64;
        TrainConfig {
            model,
            loss: Loss::Wcel,
            dataset: "d".into(),
            batch_size: 8,
            epochs: 1,
            lr: 1e-3,
            weight_decay: 0.0,
            seed: 0,
            augment: false,
            val_fraction: 0.1,
            init: None,
            checkpoint_every: 10,
            cosine: false,
            labels: Default::default(),
        }
    }

    fn refused(change: impl Fn(&mut TrainConfig), says: &str) {
        let mut c = ok();
        change(&mut c);
        let e = validate(&c).expect_err(says).to_string();
        assert!(e.contains(says), "{e:?} should say {says:?}");
    }

    #[test]
    fn every_out_of_range_setting_is_refused_by_name() {
        validate(&ok()).unwrap();
        refused(|c| c.model.width = Some(0), "width 0");
        refused(|c| c.model.input_size = 0, "input side 0");
        refused(|c| c.model.input_size = 7, "input side 7");
        refused(|c| c.model.input_size = 100_000, "input side 100000");
        refused(|c| c.batch_size = 0, "batch size 0");
        refused(|c| c.epochs = 0, "epochs");
        refused(|c| c.lr = -1.0, "learning rate -1");
        refused(|c| c.lr = f64::NAN, "learning rate NaN");
        refused(|c| c.val_fraction = 1.5, "validation fraction 1.5");
        refused(
            |c| c.model.classes = vec!["Lung cancer".into()],
            "Lung cancer",
        );
        refused(|c| c.model.classes.clear(), "no classes");
        refused(|c| c.model.transition_kernel = 2, "transition kernel");
        refused(|c| c.model.output_stride = 4, "output stride 4");
        refused(|c| c.model.pooling = Pooling::Lse { r: 0.0 }, "sharpness");
        refused(|c| c.checkpoint_every = 0, "checkpoint interval");
        refused(
            |c| {
                c.model.arch = Arch::Resnet50;
            },
            "resnet18 only",
        );
    }
}
