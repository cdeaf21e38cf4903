//! Dataset layouts. First: the NIH ChestX-ray14 release as published — `Data_Entry_2017[_v2020].csv`
//! (plain or gzipped), `train_val_list.txt` / `test_list.txt`, `BBox_List_2017.csv` with its odd
//! header, and images in `images/` or the released `images_001 … images_012/images/` folders.

pub mod nih;

pub use nih::{NihBox, NihDataset, NihEntry, NihError};
