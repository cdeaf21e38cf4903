//! Importing released weights: torchvision, torchxrayvision and CheXNet state dicts, from `.pth`
//! (any `torch.save` container, read in pure Rust) or `.safetensors`, with key mapping onto the
//! backbone's torchvision names.

use crate::backbone::Arch;
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {msg}")]
    Read { path: String, msg: String },
    #[error("{path}: no tensor matches the {arch} backbone (keys look like {sample:?})")]
    NothingMatched {
        path: String,
        arch: Arch,
        sample: Vec<String>,
    },
}

/// What an import did, for the user to check.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ImportReport {
    pub loaded: usize,
    /// Backbone variables the file did not provide (left at their initial values).
    pub missing: Vec<String>,
    /// File tensors that map to no backbone variable (classifier heads, counters).
    pub unused: Vec<String>,
    /// Names whose shapes differ: (name, file shape, model shape).
    pub shape_mismatch: Vec<(String, Vec<i64>, Vec<i64>)>,
}

/// Read every tensor of a `.pth`/`.pt` or `.safetensors` file, as f32 CPU tensors.
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, Tensor>, ImportError> {
    let shown = path.display().to_string();
    let err = |msg: String| ImportError::Read {
        path: shown.clone(),
        msg,
    };
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut out = BTreeMap::new();
    if ext == "safetensors" {
        for (name, t) in Tensor::read_safetensors(path).map_err(|e| err(e.to_string()))? {
            out.insert(name, t.to_kind(Kind::Float));
        }
        return Ok(out);
    }
    // Checkpoints often nest the weights: try the usual keys when the top level holds no tensor.
    let mut reader = pytorch_reader::PytorchReader::new(path).map_err(|e| err(e.to_string()))?;
    for key in ["state_dict", "model_state_dict", "model"] {
        if reader.tensors().is_empty() {
            if let Ok(r) = pytorch_reader::PytorchReader::with_top_level_key(path, key) {
                reader = r;
            }
        }
    }
    for t in reader.tensors().values() {
        let shape: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
        let bytes = t
            .read()
            .map_err(|e| err(format!("tensor {}: {e}", t.name)))?;
        let kind = match t.dtype() {
            pytorch_reader::DType::F32 => Kind::Float,
            pytorch_reader::DType::F64 => Kind::Double,
            pytorch_reader::DType::F16 => Kind::Half,
            pytorch_reader::DType::BF16 => Kind::BFloat16,
            pytorch_reader::DType::I64 => Kind::Int64,
            pytorch_reader::DType::I32 => Kind::Int,
            // Counters and masks are not weights.
            _ => continue,
        };
        let tensor = Tensor::from_data_size(&bytes, &shape, kind).to_kind(Kind::Float);
        out.insert(unnest(&t.name).to_string(), tensor);
    }
    Ok(out)
}

/// A tensor's name without the checkpoint container it was nested in (`{"epoch": …, "state_dict":
/// {…}}` is read with names like `state_dict.features.conv0.weight`).
fn unnest(name: &str) -> &str {
    ["state_dict.", "model_state_dict."]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name)
}

/// Map a released key onto torchvision's backbone name, or `None` for tensors that are not backbone
/// weights. Handles `module.` (DataParallel), `model.` (torchxrayvision), `densenet121.` (CheXNet)
/// prefixes and the pre-0.4 DenseNet names (`norm.1` → `norm1`).
pub fn map_key(arch: Arch, key: &str) -> Option<String> {
    let mut k = key;
    for prefix in ["module.", "model.", "densenet121.", "backbone."] {
        k = k.strip_prefix(prefix).unwrap_or(k);
    }
    if k.ends_with("num_batches_tracked")
        || arch.classifier_prefixes().iter().any(|p| k.starts_with(p))
    {
        return None;
    }
    let mut k = k.to_string();
    if arch == Arch::Densenet121 {
        for (old, new) in [
            (".norm.1", ".norm1"),
            (".norm.2", ".norm2"),
            (".conv.1", ".conv1"),
            (".conv.2", ".conv2"),
        ] {
            k = k.replace(old, new);
        }
    }
    Some(k)
}

/// Copy the backbone weights of `tensors` into `vs` (variables named `backbone.<torchvision key>`).
pub fn load_backbone(
    vs: &tch::nn::VarStore,
    arch: Arch,
    tensors: &BTreeMap<String, Tensor>,
    path_for_errors: &Path,
) -> Result<ImportReport, ImportError> {
    let mut vars = vs.variables();
    let mut report = ImportReport::default();
    let mut matched = std::collections::HashSet::new();
    tch::no_grad(|| {
        for (key, t) in tensors {
            let Some(name) = map_key(arch, key).map(|k| format!("backbone.{k}")) else {
                report.unused.push(key.clone());
                continue;
            };
            match vars.get_mut(&name) {
                Some(v) if v.size() == t.size() => {
                    v.copy_(&t.to_device(v.device()));
                    matched.insert(name);
                    report.loaded += 1;
                }
                Some(v) => report
                    .shape_mismatch
                    .push((key.clone(), t.size(), v.size())),
                None => report.unused.push(key.clone()),
            }
        }
    });
    report.missing = vars
        .keys()
        .filter(|k| k.starts_with("backbone.") && !matched.contains(*k))
        .cloned()
        .collect();
    report.missing.sort();
    if report.loaded == 0 {
        return Err(ImportError::NothingMatched {
            path: path_for_errors.display().to_string(),
            arch,
            sample: tensors.keys().take(5).cloned().collect(),
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_containers_are_unnested() {
        assert_eq!(
            unnest("state_dict.module.densenet121.features.conv0.weight"),
            "module.densenet121.features.conv0.weight"
        );
        assert_eq!(unnest("model_state_dict.fc.bias"), "fc.bias");
        assert_eq!(unnest("model.conv1.weight"), "model.conv1.weight");
    }

    #[test]
    fn keys_from_released_checkpoints_map_to_torchvision_names() {
        assert_eq!(
            map_key(Arch::Resnet50, "module.layer1.0.conv1.weight").as_deref(),
            Some("layer1.0.conv1.weight")
        );
        assert_eq!(map_key(Arch::Resnet50, "fc.weight"), None);
        assert_eq!(map_key(Arch::Resnet50, "bn1.num_batches_tracked"), None);
        assert_eq!(
            map_key(
                Arch::Densenet121,
                "module.densenet121.features.denseblock1.denselayer1.norm.1.weight"
            )
            .as_deref(),
            Some("features.denseblock1.denselayer1.norm1.weight")
        );
        assert_eq!(
            map_key(Arch::Densenet121, "module.densenet121.classifier.0.weight"),
            None
        );
        assert_eq!(
            map_key(Arch::Densenet121, "model.features.norm5.bias").as_deref(),
            Some("features.norm5.bias")
        );
        assert_eq!(map_key(Arch::Googlenet, "aux1.conv.conv.weight"), None);
    }
}
