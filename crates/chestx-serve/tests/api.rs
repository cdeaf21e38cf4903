//! The JSON API against a server on 127.0.0.1: real NIH films and a real DICOM through
//! `/v1/predict` (raw and multipart), report labels with evidence, the model description, health,
//! metrics, bad uploads (4xx JSON, never 5xx, and the server keeps serving), backpressure and the
//! token.

mod common;
use chestx_serve::{Limits, ThresholdSource};
use common::{client, serve};
use reqwest::blocking::Response;
use reqwest::StatusCode;
use serde_json::Value;
use std::path::PathBuf;

fn nih_film() -> Option<PathBuf> {
    let dir = chestx_testkit::data("nih/images")?;
    let mut films: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    films.sort();
    films.into_iter().next()
}

const DICOM: &str = "dicom/1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm";

fn json(r: Response) -> (StatusCode, Value) {
    let status = r.status();
    let text = r.text().unwrap();
    let v =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"));
    (status, v)
}

fn post(url: &str, content_type: &str, body: Vec<u8>) -> Response {
    client()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .unwrap()
}

/// Boxes inside the film, every probability in [0, 1], and the heatmaps asked for.
fn check_prediction(v: &Value, width: u64, height: u64, heatmaps: bool) {
    assert_eq!(v["film"]["width"], width);
    assert_eq!(v["film"]["height"], height);
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 3);
    for f in findings {
        let p = f["probability"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{f}");
        // Threshold 0: every finding is called, so each has its boxes.
        assert_eq!(f["positive"], true);
        for b in f["boxes"].as_array().unwrap() {
            let (x, y, w, h) = (
                b["x"].as_f64().unwrap(),
                b["y"].as_f64().unwrap(),
                b["w"].as_f64().unwrap(),
                b["h"].as_f64().unwrap(),
            );
            assert!(x >= 0.0 && y >= 0.0 && w > 0.0 && h > 0.0, "{b}");
            assert!(
                x + w <= width as f64 + 1e-6 && y + h <= height as f64 + 1e-6,
                "{b}"
            );
        }
        assert_eq!(f["heatmap"].as_str().is_some(), heatmaps, "{f}");
    }
}

#[test]
fn heatmaps_are_computed_for_what_the_response_uses_and_are_the_same_either_way() {
    let Some(png) = nih_film() else {
        return;
    };
    let body = std::fs::read(&png).unwrap();
    // Threshold 1: nothing is called, so by default no map is computed, none returned, no box.
    let none_called = serve(ThresholdSource::Fixed(1.0), Limits::default(), 8, None);
    let (status, plain) = json(post(
        &format!("{}/v1/predict", none_called.url),
        "image/png",
        body.clone(),
    ));
    assert_eq!(status, 200, "{plain}");
    for f in plain["findings"].as_array().unwrap() {
        assert_eq!(f["positive"], false, "{f}");
        assert!(f["heatmap"].is_null() && f["boxes"].as_array().unwrap().is_empty());
    }
    // Asked for every heatmap, it gets them (and still no boxes): the same maps, and the same
    // probabilities, as a server that calls every finding.
    let url = format!("{}/v1/predict?heatmaps=all", none_called.url);
    let (_, all) = json(post(&url, "image/png", body.clone()));
    let every_called = serve(ThresholdSource::Fixed(0.0), Limits::default(), 8, None);
    let url = format!("{}/v1/predict?heatmaps=all", every_called.url);
    let (_, called) = json(post(&url, "image/png", body));
    for (a, c) in all["findings"]
        .as_array()
        .unwrap()
        .iter()
        .zip(called["findings"].as_array().unwrap())
    {
        assert!(a["heatmap"].as_str().is_some() && a["boxes"].as_array().unwrap().is_empty());
        assert_eq!(a["heatmap"], c["heatmap"]);
        assert_eq!(a["probability"], c["probability"]);
        assert!(!c["boxes"].as_array().unwrap().is_empty(), "{c}");
    }
    for (a, p) in all["findings"]
        .as_array()
        .unwrap()
        .iter()
        .zip(plain["findings"].as_array().unwrap())
    {
        assert_eq!(a["probability"], p["probability"]);
    }
}

#[test]
fn predicts_real_films_and_dicom_without_leaking_identifiers() {
    let (Some(png), Some(dcm)) = (nih_film(), chestx_testkit::data(DICOM)) else {
        return;
    };
    let s = serve(ThresholdSource::Fixed(0.0), Limits::default(), 8, None);
    let url = format!("{}/v1/predict?heatmaps=all", s.url);

    let png_bytes = std::fs::read(&png).unwrap();
    let (status, raw) = json(post(&url, "image/png", png_bytes.clone()));
    assert_eq!(status, 200, "{raw}");
    assert_eq!(raw["film"]["format"], "png");
    check_prediction(&raw, 1024, 1024, true);
    // The heatmap is a PNG of the model input's size.
    let hm = raw["findings"][0]["heatmap"].as_str().unwrap();
    let b64 = hm.strip_prefix("data:image/png;base64,").unwrap();
    use base64::Engine;
    let img = image::load_from_memory(
        &base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap();
    assert_eq!((img.width(), img.height()), (64, 64));

    // The same film as a multipart upload: the same answer.
    let form = reqwest::blocking::multipart::Form::new().part(
        "file",
        reqwest::blocking::multipart::Part::bytes(png_bytes).file_name("film.png"),
    );
    let (status, multi) = json(client().post(&url).multipart(form).send().unwrap());
    assert_eq!(status, 200, "{multi}");
    assert_eq!(multi["findings"], raw["findings"]);

    // DICOM: decoded size, technical attributes, and no identifier of the file anywhere.
    let dcm_bytes = std::fs::read(&dcm).unwrap();
    let r = post(
        &format!("{}/v1/predict?film=true", s.url),
        "application/dicom",
        dcm_bytes,
    );
    assert_eq!(r.status(), 200);
    let text = r.text().unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["film"]["format"], "dicom");
    check_prediction(&v, 1024, 1024, true);
    assert_eq!(v["film"]["dicom"]["photometric"], "MONOCHROME2");
    assert!(v["display"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
    let obj = dicom_object::open_file(&dcm).unwrap();
    use dicom_dictionary_std::tags;
    for tag in [
        tags::PATIENT_NAME,
        tags::PATIENT_ID,
        tags::STUDY_INSTANCE_UID,
        tags::PATIENT_BIRTH_DATE,
        tags::STUDY_DATE,
    ] {
        if let Ok(e) = obj.element(tag) {
            let value = e.to_str().unwrap().trim().to_string();
            if value.len() >= 3 {
                assert!(
                    !text.contains(&value),
                    "{tag:?} value {value:?} leaked into the response"
                );
            }
        }
    }
    for key in [
        "patient_id",
        "patient_sex",
        "patient_age",
        "study_date",
        "study_uid",
    ] {
        assert!(!text.contains(key), "{key} in the response");
    }
}

/// A PNG of `w × h` whose header says `claimed × claimed` (CRC fixed, so only the size is wrong).
fn png_claiming(claimed: u32) -> Vec<u8> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&[0u8; 64], 8, 8, image::ExtendedColorType::L8)
        .unwrap();
    // IHDR data starts at 16: width, height (big endian); its CRC covers type + data (12..29).
    out[16..20].copy_from_slice(&claimed.to_be_bytes());
    out[20..24].copy_from_slice(&claimed.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&out[12..29]);
    out[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    out
}

#[test]
fn bad_uploads_are_4xx_json_and_the_server_keeps_serving() {
    let limits = Limits {
        max_body: 8 << 20,
        ..Limits::default()
    };
    let s = serve(ThresholdSource::Fixed(0.5), limits, 8, None);
    let url = format!("{}/v1/predict", s.url);
    let good = png_claiming(8);
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("empty body", "image/png", vec![], 400, "empty_body"),
        (
            "truncated PNG",
            "image/png",
            good[..good.len() - 20].to_vec(),
            422,
            "undecodable_image",
        ),
        (
            "20000x20000 bomb",
            "image/png",
            png_claiming(20_000),
            422,
            "undecodable_image",
        ),
        (
            "text",
            "application/octet-stream",
            b"not a film at all".to_vec(),
            415,
            "unsupported_format",
        ),
        (
            "wrong content type",
            "text/plain",
            good.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "JSON content type",
            "application/json",
            b"{}".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "body over the limit",
            "application/octet-stream",
            vec![0u8; 9 << 20],
            413,
            "body_too_large",
        ),
    ];
    for (what, ct, body, want, kind) in cases {
        // A server that refuses a body early may close the connection while the client is still
        // writing it (see the 200-MB test): that refusal carries no answer to check, so send again
        // until one comes back; every answer must be the JSON error below.
        let answer = (0..5).find_map(|_| {
            client()
                .post(&url)
                .header("content-type", ct)
                .body(body.clone())
                .send()
                .ok()
        });
        let (status, v) = json(answer.unwrap_or_else(|| panic!("{what}: never answered")));
        assert_eq!(status.as_u16(), want, "{what}: {v}");
        assert_eq!(v["error"]["kind"], kind, "{what}: {v}");
        assert!(
            !v["error"]["message"].as_str().unwrap().is_empty(),
            "{what}"
        );
    }
    // A bad query is refused by name too.
    let (status, v) = json(post(
        &format!("{url}?heatmaps=some"),
        "image/png",
        good.clone(),
    ));
    assert_eq!(
        (status.as_u16(), v["error"]["kind"].as_str()),
        (400, Some("bad_query")),
        "{v}"
    );
    let (status, v) = json(
        client()
            .get(format!("{}/v1/nothing", s.url))
            .send()
            .unwrap(),
    );
    assert_eq!(
        (status.as_u16(), v["error"]["kind"].as_str()),
        (404, Some("not_found"))
    );
    // Still serving, and the errors were counted by kind.
    let (status, v) = json(post(&url, "image/png", good));
    assert_eq!(status, 200, "{v}");
    let metrics = client()
        .get(format!("{}/metrics", s.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains(r#"chestx_errors_total{kind="undecodable_image"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"route="/v1/predict",status="200""#),
        "{metrics}"
    );
    assert!(
        metrics.contains("chestx_request_duration_seconds_bucket"),
        "{metrics}"
    );
}

#[test]
fn a_200_megabyte_body_is_refused_without_being_read() {
    let s = serve(ThresholdSource::Fixed(0.5), Limits::default(), 8, None);
    let r = client()
        .post(format!("{}/v1/predict", s.url))
        .header("content-type", "application/octet-stream")
        .body(vec![0u8; 200 << 20])
        .send();
    // The server answers 413 as soon as the limit is passed; a client still sending may see the
    // connection closed instead, which is also a refusal. Either way the server keeps serving.
    if let Ok(r) = r {
        eprintln!("answered {}", r.status());
        let (status, v) = json(r);
        assert_eq!(status, 413, "{v}");
    }
    let (status, _) = json(client().get(format!("{}/healthz", s.url)).send().unwrap());
    assert_eq!(status, 200);
}

#[test]
fn labels_reports_with_evidence_in_the_chexpert_convention() {
    let s = serve(ThresholdSource::Fixed(0.5), Limits::default(), 8, None);
    let url = format!("{}/v1/label", s.url);
    let text =
        "FINDINGS: No pneumothorax. Cannot exclude pneumonia. IMPRESSION: Small left effusion.";
    let (status, v) = json(post(&url, "text/plain", text.as_bytes().to_vec()));
    assert_eq!(status, 200, "{v}");
    let r = &v["reports"][0];
    assert_eq!(r["labels"]["Pneumothorax"], 0);
    assert_eq!(r["labels"]["Pneumonia"], -1);
    assert_eq!(r["labels"]["Effusion"], 1);
    assert_eq!(r["labels"]["Mass"], Value::Null);
    for e in r["evidence"].as_array().unwrap() {
        let (a, b) = (
            e["start"].as_u64().unwrap() as usize,
            e["end"].as_u64().unwrap() as usize,
        );
        assert_eq!(
            text[a..b],
            *e["phrase"].as_str().unwrap(),
            "ASCII: chars = bytes"
        );
    }
    let many = serde_json::json!([{"id": "a", "text": "Normal chest."}, "Right upper lobe mass."]);
    let (status, v) = json(post(
        &url,
        "application/json",
        many.to_string().into_bytes(),
    ));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["reports"][0]["id"], "a");
    assert_eq!(v["reports"][0]["labels"]["No Finding"], 1);
    assert_eq!(v["reports"][1]["labels"]["Mass"], 1);
    let (status, v) = json(post(&url, "application/json", b"[1, 2]".to_vec()));
    assert_eq!(
        (status.as_u16(), v["error"]["kind"].as_str()),
        (400, Some("bad_json"))
    );
}

#[test]
fn describes_the_model_with_validation_thresholds() {
    let s = serve(ThresholdSource::Validation, Limits::default(), 8, None);
    let (status, m) = json(client().get(format!("{}/v1/model", s.url)).send().unwrap());
    assert_eq!(status, 200);
    assert_eq!(
        m["classes"],
        serde_json::json!(["Effusion", "Mass", "Nodule"])
    );
    assert_eq!(m["input_size"], 64);
    assert!(
        m["thresholds_source"]
            .as_str()
            .unwrap()
            .contains("validation"),
        "{m}"
    );
    for c in ["Effusion", "Mass", "Nodule"] {
        let t = m["thresholds"][c].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&t), "{c}: {t}");
    }
    assert_eq!(
        m["training"]["dataset"], "data",
        "the folder name only, no server path"
    );
    let (status, h) = json(client().get(format!("{}/healthz", s.url)).send().unwrap());
    assert_eq!((status.as_u16(), h["status"].as_str()), (200, Some("ok")));
}

#[test]
fn a_full_queue_answers_503_with_retry_after_and_loses_nothing() {
    // Room for two predictions at a time: of 16 sent at once, each is answered — scored (200) or
    // refused at once (503 + Retry-After) — and the server serves afterwards.
    let limits = Limits {
        max_inflight: 2,
        ..Limits::default()
    };
    let s = serve(ThresholdSource::Fixed(0.5), limits, 1, None);
    let body = png_claiming(8);
    let url = format!("{}/v1/predict", s.url);
    let answers: Vec<(u16, Option<String>, Value)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..16)
            .map(|_| {
                sc.spawn(|| {
                    let r = post(&url, "image/png", body.clone());
                    let retry = r
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_string());
                    let (status, v) = json(r);
                    (status.as_u16(), retry, v)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    eprintln!("{ok} of 16 scored, {} refused with 503", answers.len() - ok);
    assert!(ok >= 1, "{answers:?}");
    for (status, retry, v) in &answers {
        match status {
            200 => {}
            503 => {
                assert_eq!(retry.as_deref(), Some("1"), "{v}");
                assert_eq!(v["error"]["kind"], "queue_full");
            }
            other => panic!("{other}: {v}"),
        }
    }
    let (status, _) = json(post(&url, "image/png", body));
    assert_eq!(status, 200);
}

#[test]
fn a_token_guards_the_api_but_not_health() {
    let token = "0123456789abcdef-token";
    let s = serve(
        ThresholdSource::Fixed(0.5),
        Limits::default(),
        8,
        Some(token),
    );
    let (status, v) = json(client().get(format!("{}/v1/model", s.url)).send().unwrap());
    assert_eq!(
        (status.as_u16(), v["error"]["kind"].as_str()),
        (401, Some("unauthorized"))
    );
    let wrong = client()
        .get(format!("{}/v1/model", s.url))
        .bearer_auth("0123456789abcdef-tokem")
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = client()
        .get(format!("{}/v1/model", s.url))
        .bearer_auth(token)
        .send()
        .unwrap();
    assert_eq!(right.status(), 200);
    assert_eq!(
        client()
            .get(format!("{}/healthz", s.url))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client().get(format!("{}/", s.url)).send().unwrap().status(),
        200
    );
}

#[test]
fn shows_an_evaluation_with_its_gallery_by_number_only() {
    use chestx_infer::evaluate::{evaluate, EvalOptions};
    let run = chestx_infer::Run::open(common::tiny_run(), tch::Device::Cpu).unwrap();
    let out = tempfile::tempdir().unwrap();
    let opts = EvalOptions {
        overlays: 6,
        bootstrap: 50,
        ..EvalOptions::default()
    };
    let res = evaluate(&run, out.path(), &opts, &|_, _| {}).unwrap();
    assert!(!res.overlays.is_empty());
    let s = common::serve_with(
        ThresholdSource::Fixed(0.5),
        Limits::default(),
        8,
        None,
        Some(out.path()),
    );
    let (status, e) = json(client().get(format!("{}/v1/eval", s.url)).send().unwrap());
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["classes"].as_array().unwrap().len(), 3);
    assert!(
        !e["run"].as_str().unwrap().contains('/'),
        "no server path: {}",
        e["run"]
    );
    let cases = e["cases"].as_array().unwrap();
    assert_eq!(cases.len(), res.overlays.len());
    for (i, c) in cases.iter().enumerate() {
        assert_eq!(c["id"], i);
        assert!(c.get("file").is_none(), "no file names: {c}");
        let outcome = c["outcome"].as_str().unwrap();
        assert!(
            ["hit", "miss", "false_box", "clear"].contains(&outcome),
            "{c}"
        );
        let r = client()
            .get(format!("{}/v1/eval/overlays/{i}", s.url))
            .send()
            .unwrap();
        assert_eq!(r.headers()["content-type"], "image/png");
        let want = std::fs::read(out.path().join(&res.overlays[i].file)).unwrap();
        assert_eq!(r.bytes().unwrap().as_ref(), &want[..], "overlay {i}");
    }
    let roc = client()
        .get(format!("{}/v1/eval/roc.png", s.url))
        .send()
        .unwrap();
    assert!(image::load_from_memory(&roc.bytes().unwrap()).is_ok());
    for bad in [
        format!("{}", cases.len()),
        "..%2Fresults.json".into(),
        "-1".into(),
    ] {
        let (status, v) = json(
            client()
                .get(format!("{}/v1/eval/overlays/{bad}", s.url))
                .send()
                .unwrap(),
        );
        assert_eq!(
            (status.as_u16(), v["error"]["kind"].as_str()),
            (404, Some("not_found")),
            "{bad}"
        );
    }
    // Without --eval: a clear 404.
    let plain = serve(ThresholdSource::Fixed(0.5), Limits::default(), 8, None);
    let (status, v) = json(
        client()
            .get(format!("{}/v1/eval", plain.url))
            .send()
            .unwrap(),
    );
    assert_eq!(
        (status.as_u16(), v["error"]["kind"].as_str()),
        (404, Some("no_evaluation"))
    );
}
