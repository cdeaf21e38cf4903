//! Reading reports: every format, and bad input that must give a clear per-record error while the
//! batch carries on.

use chestx_report::{read_inputs, ReadOptions, RecordError, Section};
use std::io::Write;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

const XML: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<eCitation><uId id="CXR7"/><Abstract>
<AbstractText Label="INDICATION">Cough &amp; fever.</AbstractText>
<AbstractText Label="FINDINGS">Small left effusion.</AbstractText>
<AbstractText Label="IMPRESSION">Effusion.</AbstractText>
</Abstract></eCitation>"#;

#[test]
fn csv_takes_findings_and_impression_columns() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "r.csv",
        b"uid,indication,findings,impression\n1,pneumonia?,No effusion.,Normal.\n",
    );
    let r = read_inputs(&[p], &ReadOptions::default());
    let rep = r[0].as_ref().unwrap();
    assert_eq!(rep.id, "1");
    let names: Vec<_> = rep
        .sources
        .iter()
        .map(|s| (s.name.as_str(), s.section))
        .collect();
    assert_eq!(
        names,
        vec![
            ("findings", Some(Section::Findings)),
            ("impression", Some(Section::Impression))
        ]
    );
}

#[test]
fn csv_without_known_columns_uses_every_other_column_and_custom_id() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "r.csv",
        b"text,accession\nFINDINGS: effusion,A1\n",
    );
    let opts = ReadOptions {
        id_column: Some("accession".into()),
        ..Default::default()
    };
    let r = read_inputs(&[p], &opts);
    let rep = r[0].as_ref().unwrap();
    assert_eq!(rep.id, "A1");
    assert_eq!(rep.sources.len(), 1);
    assert_eq!(rep.sources[0].section, None);
}

#[test]
fn bad_csv_rows_are_reported_and_the_rest_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"uid,findings,impression\n1,Effusion.,Effusion.\n2,too,many,fields\n3,\xff\xfe bad,x\n4,,\n".to_vec();
    bytes.extend_from_slice(b"5,");
    bytes.extend(std::iter::repeat_n(b'a', 2 << 20));
    bytes.extend_from_slice(b",x\n6,Normal.,Normal.\n");
    let p = write(dir.path(), "r.csv", &bytes);
    let r = read_inputs(&[p], &ReadOptions::default());
    assert_eq!(r.len(), 6, "every row is accounted for: {r:?}");
    assert!(r[0].is_ok() && r[5].is_ok());
    let msg = |i: usize| r[i].as_ref().unwrap_err().to_string();
    assert!(
        msg(1).contains("r.csv:3") && msg(1).contains("malformed CSV row"),
        "{}",
        msg(1)
    );
    assert!(
        msg(2).contains("(report 3)") && msg(2).contains("not UTF-8"),
        "{}",
        msg(2)
    );
    assert!(
        msg(3).contains("(report 4)") && msg(3).contains("empty report"),
        "{}",
        msg(3)
    );
    assert!(
        msg(4).contains("(report 5)") && msg(4).contains("over the limit"),
        "{}",
        msg(4)
    );
}

#[test]
fn openi_xml_sections_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "7.xml", XML.as_bytes());
    let r = read_inputs(&[p], &ReadOptions::default());
    let rep = r[0].as_ref().unwrap();
    assert_eq!(rep.id, "CXR7");
    assert_eq!(rep.sources[0].text, "Cough & fever.");
    assert_eq!(rep.sources[1].section, Some(Section::Findings));
}

#[test]
fn malformed_xml_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "8.xml",
        b"<eCitation><Abstract><AbstractText Label=\"FINDINGS\">Effusion</Abstract>",
    );
    let r = read_inputs(&[p], &ReadOptions::default());
    let e = r[0].as_ref().unwrap_err();
    assert!(e.origin.ends_with("8.xml"), "{e}");
}

#[test]
fn folders_of_txt_xml_and_tgz_are_read_in_order() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.txt",
        b"FINDINGS: Small effusion.\nIMPRESSION: Effusion.",
    );
    write(dir.path(), "b.txt", b"\xc3\x28 not utf8");
    write(dir.path(), "notes.md", b"not a report");
    // A gzipped tar with two OpenI files, packed in reverse order.
    let mut tar = tar::Builder::new(Vec::new());
    for (name, body) in [
        ("ecgen/10.xml", XML.replace("CXR7", "CXR10")),
        ("ecgen/2.xml", XML.replace("CXR7", "CXR2")),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, body.as_bytes()).unwrap();
    }
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    write(dir.path(), "c.tgz", &gz.finish().unwrap());
    let r = read_inputs(&[dir.path().to_path_buf()], &ReadOptions::default());
    let ids: Vec<String> = r
        .iter()
        .map(|x| {
            x.as_ref()
                .map(|r| r.id.clone())
                .unwrap_or_else(|e| format!("ERR {}", e.message))
        })
        .collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(ids[0], "a");
    assert!(ids[1].starts_with("ERR not UTF-8"), "{ids:?}");
    assert_eq!(&ids[2..], ["CXR2", "CXR10"]);
}

#[test]
fn unknown_explicit_file_and_missing_path_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "x.pdf", b"%PDF");
    let missing = dir.path().join("nope.csv");
    let r = read_inputs(&[p, missing], &ReadOptions::default());
    assert!(r[0]
        .as_ref()
        .unwrap_err()
        .message
        .contains("unknown input type"));
    assert!(r[1].as_ref().unwrap_err().message.contains("cannot read"));
}

#[test]
fn free_text_headings_choose_the_sections() {
    let l = chestx_report::Labeler::with_defaults();
    let t = "INDICATION: rule out pneumonia.\nFINDINGS: Heart normal. Lungs clear.\nIMPRESSION: No acute disease.";
    let out = l.label_text(t);
    // The indication's "pneumonia" is not read by default.
    assert_eq!(out.labels.get(chestx_core::Finding::Pneumonia), None);
    assert_eq!(
        out.labels.get(chestx_core::Finding::NoFinding),
        Some(chestx_core::LabelState::Positive)
    );
}

/// Issue 18: a truncated `.tgz` was read up to the break without a word.
#[test]
fn a_truncated_archive_is_an_error_and_what_came_before_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    for i in 0..200 {
        let body = XML.replace("CXR7", &format!("CXR{i}"));
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("ecgen/{i}.xml"), body.as_bytes())
            .unwrap();
    }
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let whole = gz.finish().unwrap();
    let ok = read_inputs(
        &[write(dir.path(), "whole.tgz", &whole)],
        &ReadOptions::default(),
    );
    assert!(ok.iter().all(|r| r.is_ok()) && ok.len() == 200);
    let cut = write(dir.path(), "cut.tgz", &whole[..whole.len() / 2]);
    let r = read_inputs(&[cut], &ReadOptions::default());
    let errors: Vec<&RecordError> = r.iter().filter_map(|x| x.as_ref().err()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.contains("not read"), "{}", errors[0]);
    assert!(r.len() > 1 && r.len() < 200, "{} records", r.len());
}

/// Property: arbitrary bytes as a CSV, an XML report, a text report or an archive — whatever comes
/// back (reports or errors naming the file), reading and labelling never panic.
#[test]
fn arbitrary_bytes_never_panic_the_readers_or_the_labeler() {
    let dir = tempfile::tempdir().unwrap();
    let labeler = chestx_report::Labeler::with_defaults();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let words: &[&[u8]] = &[
        b"no ",
        b"pneumothorax",
        b"effusion",
        b",",
        b"\n",
        b"\"",
        b"FINDINGS:",
        b"<AbstractText Label=\"FINDINGS\">",
        b"cannot exclude ",
        b"\xff\xfe",
        b"\0",
        b"mass",
        b"IMPRESSION:",
        b".",
        b"ustar",
    ];
    for case in 0..300 {
        let mut bytes = Vec::new();
        for _ in 0..(next() % 200) {
            if next() % 3 == 0 {
                bytes.push(next() as u8);
            } else {
                bytes.extend_from_slice(words[(next() % words.len() as u64) as usize]);
            }
        }
        let ext = ["csv", "xml", "txt", "tgz", "tar"][case % 5];
        let p = write(dir.path(), &format!("case{case}.{ext}"), &bytes);
        for r in read_inputs(std::slice::from_ref(&p), &ReadOptions::default()) {
            match r {
                Ok(rep) => {
                    labeler.label(&rep);
                }
                Err(e) => assert!(e.origin.contains(&format!("case{case}")), "{e}"),
            }
        }
        labeler.label_text(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn a_windows_written_csv_names_the_same_lines_as_a_unix_one() {
    let dir = tempfile::tempdir().unwrap();
    let lf = "uid,findings,impression\n1,Effusion.,Effusion.\n2,\"two\r\nlines\",x\n3,too,many,fields\n4,,\n";
    // Every terminator CRLF; the quoted cell already holds one.
    let crlf = lf.replace("\n", "\r\n").replace("\r\r\n", "\r\n");
    for (name, text) in [("lf.csv", lf.to_string()), ("crlf.csv", crlf)] {
        let p = write(dir.path(), name, text.as_bytes());
        let r = read_inputs(&[p], &ReadOptions::default());
        let msg = |i: usize| r[i].as_ref().unwrap_err().to_string();
        assert_eq!(r.len(), 4, "{name}: {r:?}");
        assert!(msg(2).contains(&format!("{name}:5")), "{name}: {}", msg(2));
        assert!(msg(3).contains(&format!("{name}:6")), "{name}: {}", msg(3));
        let two = &r[1].as_ref().unwrap().sources[0].text;
        assert_eq!(two, "two\r\nlines", "{name}: a quoted cell keeps its bytes");
    }
}
