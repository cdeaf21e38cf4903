//! Dataset layouts. First: the NIH ChestX-ray14 release as published — `Data_Entry_2017[_v2020].csv`
//! (plain or gzipped), `train_val_list.txt` / `test_list.txt`, `BBox_List_2017.csv` with its odd
//! header, and images in `images/` or the released `images_001 … images_012/images/` folders.
//! Second: the CheXpert layout (`train.csv`/`valid.csv`, 1/0/-1/blank label cells), with a policy for
//! uncertain and blank labels. Then the training view of a dataset (samples per split, patient-wise validation) and the batch
//! loader that decodes, resizes, augments and normalizes in parallel ahead of the model. And the way
//! in: `ingest` turns hospital DICOM/PNG exports into a pseudonymized dataset in that same layout.

pub mod chexpert;
pub mod dataset;
pub mod ingest;
pub mod loader;
pub mod meta;
pub mod nih;
pub mod samples;

pub use chexpert::{
    read_label_file, BlankAs, ChexpertDataset, SampleOptions, SourceFile, UncertainAs,
};
pub use dataset::Dataset;
pub use loader::{epoch_order, Batch, Loader, LoaderConfig};
pub use nih::{NihBox, NihDataset, NihEntry, NihError};
pub use samples::{check_val_fraction, patient_in_val, Sample, Split};
