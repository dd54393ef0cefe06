//! Thumbnails and previews (`GET /objects/<sha>?size=`): generated once, in the displayed
//! frame, stored as replicated objects that every node serves.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use tessera_client::Client;
use tessera_cluster_tests::{Options, TestCluster};

use crate::support::{assert_refused, object_record, upload};

/// A `width` x `height` JPEG whose left half is red and right half blue, with an EXIF APP1
/// segment right after SOI saying `orientation`.
fn jpeg_with_orientation(width: u32, height: u32, orientation: u16) -> Vec<u8> {
    let pixels = RgbImage::from_fn(width, height, |x, y| {
        // Some texture, so the JPEG is not trivially small.
        let grain = ((x * 7 + y * 13) % 32) as u8;
        if x < width / 2 {
            Rgb([220 + grain / 2, grain, grain])
        } else {
            Rgb([grain, grain, 220 + grain / 2])
        }
    });
    let mut plain = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(pixels)
        .write_to(&mut plain, ImageFormat::Jpeg)
        .expect("encode JPEG");
    let plain = plain.into_inner();
    // A big-endian TIFF structure with one IFD0 entry: Orientation (SHORT, count 1).
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe1];
    jpeg.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
    jpeg.extend_from_slice(b"Exif\0\0");
    jpeg.extend_from_slice(&tiff);
    jpeg.extend_from_slice(&plain[2..]);
    jpeg
}

/// A PNG with an alpha channel: opaque green on top, transparent below.
fn png_with_alpha(width: u32, height: u32) -> Vec<u8> {
    let pixels = RgbaImage::from_fn(width, height, |x, y| {
        let alpha = if y < height / 2 { 255 } else { 0 };
        Rgba([(x % 256) as u8, 200, (y % 256) as u8, alpha])
    });
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgba8(pixels)
        .write_to(&mut out, ImageFormat::Png)
        .expect("encode PNG");
    out.into_inner()
}

/// The header of a 10 x 10 little-endian TIFF: accepted as an upload, not decoded for
/// thumbnails (no TIFF decoder is built in).
fn tiff() -> Vec<u8> {
    let mut tiff = b"II\x2a\0\x08\0\0\0\x02\0".to_vec();
    for tag in [256u16, 257] {
        tiff.extend_from_slice(&tag.to_le_bytes());
        tiff.extend_from_slice(&3u16.to_le_bytes());
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&10u32.to_le_bytes());
    }
    tiff.extend_from_slice(&[0; 4 + 300]);
    tiff
}

/// The sum of a labelled counter's series in a node's `/metrics`.
async fn generated(client: &Client) -> u64 {
    let reply = client.get("/metrics").await.expect("metrics");
    String::from_utf8_lossy(&reply.body)
        .lines()
        .filter(|l| l.starts_with("tessera_derived_generated_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn generated_everywhere(cluster: &TestCluster) -> u64 {
    let mut total = 0;
    for node in &cluster.nodes {
        total += generated(&node.client()).await;
    }
    total
}

/// `GET path`, asserting a 200 with `content_type`; the decoded image.
async fn fetch_image(client: &Client, path: &str, content_type: &str) -> DynamicImage {
    let reply = client.get(path).await.expect("GET");
    assert_eq!(
        reply.status,
        200,
        "{path} from {}: {:?}",
        client.base(),
        reply.json()
    );
    assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
    assert!(reply.header("etag").is_some(), "{path} has an ETag");
    image::load_from_memory(&reply.body).expect("a decodable image")
}

#[tokio::test]
async fn thumbnails_and_previews_are_generated_once_in_the_displayed_frame_and_served_everywhere() {
    let mut cluster = TestCluster::start(Options::default()).await;
    let client = cluster.node(1).client();
    // Stored 4000 x 3000, displayed 3000 x 4000 (orientation 6 turns it a quarter clockwise:
    // the stored left half, red, is the displayed top half).
    let jpeg = jpeg_with_orientation(4000, 3000, 6);
    let png = png_with_alpha(1600, 1000);
    let jpeg_sha = upload(&client, &jpeg).await;
    let png_sha = upload(&client, &png).await;
    let cases = [
        (&jpeg_sha, "thumb", "image/jpeg", (192, 256)),
        (&jpeg_sha, "preview", "image/jpeg", (960, 1280)),
        (&png_sha, "thumb", "image/png", (256, 160)),
        (&png_sha, "preview", "image/png", (1280, 800)),
    ];
    for round in 0..2 {
        for node in &cluster.nodes {
            let client = node.client();
            for (sha, size, content_type, (width, height)) in &cases {
                let path = format!("/objects/{sha}?size={size}");
                let image = fetch_image(&client, &path, content_type).await;
                assert_eq!((image.width(), image.height()), (*width, *height), "{path}");
                if *sha == &jpeg_sha {
                    let top = image.to_rgb8().get_pixel(width / 2, height / 4).0;
                    let bottom = image.to_rgb8().get_pixel(width / 2, height * 3 / 4).0;
                    assert!(top[0] > 150 && top[2] < 100, "top is red: {top:?}");
                    assert!(
                        bottom[2] > 150 && bottom[0] < 100,
                        "bottom is blue: {bottom:?}"
                    );
                } else {
                    let rgba = image.to_rgba8();
                    assert_eq!(rgba.get_pixel(width / 2, height / 4).0[3], 255);
                    assert_eq!(rgba.get_pixel(width / 2, height * 3 / 4).0[3], 0);
                }
            }
        }
        // Each (image, size) was generated once in the cluster: the first node's request made
        // it, every later request (other nodes, the second round) found the record.
        assert_eq!(
            generated_everywhere(&cluster).await,
            4,
            "after round {round}"
        );
    }
    let thumb = client
        .get(&format!("/objects/{jpeg_sha}?size=thumb"))
        .await
        .unwrap();
    let etag = thumb.header("etag").expect("etag").to_owned();
    assert_ne!(etag, format!("\"{jpeg_sha}\""), "the thumbnail's own hash");

    // A presigned URL of the original reaches its thumbnail; a tampered one, or the same
    // signature on another object, does not.
    let url = object_record(&client, &jpeg_sha).await["url"]
        .as_str()
        .expect("presigned url")
        .to_owned();
    let anon = client.anonymous();
    let image = fetch_image(&anon, &format!("{url}&size=thumb"), "image/jpeg").await;
    assert_eq!((image.width(), image.height()), (192, 256));
    let sized_first = url.replacen('?', "?size=preview&", 1);
    let image = fetch_image(&anon, &sized_first, "image/jpeg").await;
    assert_eq!((image.width(), image.height()), (960, 1280));
    let tampered = format!("{}&size=thumb", url.replace("sig=", "sig=00"));
    assert_eq!(anon.get(&tampered).await.unwrap().status, 401);
    let other = format!("{}&size=thumb", url.replace(&jpeg_sha, &png_sha));
    assert_eq!(anon.get(&other).await.unwrap().status, 401);

    // Unknown sizes and undecodable objects are JSON errors naming the problem.
    let bad = client
        .get(&format!("/objects/{jpeg_sha}?size=huge"))
        .await
        .unwrap();
    assert_refused(&bad, 400, "bad_size");
    let tiff_sha = upload(&client, &tiff()).await;
    let broken = client
        .get(&format!("/objects/{tiff_sha}?size=thumb"))
        .await
        .unwrap();
    assert_refused(&broken, 422, "not_decodable");

    // The node that generated everything goes away; the others still serve the thumbnails
    // from their replicas without generating them again.
    let before =
        generated(&cluster.node(2).client()).await + generated(&cluster.node(3).client()).await;
    cluster.kill(1);
    for id in [2, 3] {
        let client = cluster.node(id).client();
        let image = fetch_image(
            &client,
            &format!("/objects/{jpeg_sha}?size=thumb"),
            "image/jpeg",
        )
        .await;
        assert_eq!((image.width(), image.height()), (192, 256));
        let image = fetch_image(
            &client,
            &format!("/objects/{png_sha}?size=preview"),
            "image/png",
        )
        .await;
        assert_eq!((image.width(), image.height()), (1280, 800));
    }
    let after =
        generated(&cluster.node(2).client()).await + generated(&cluster.node(3).client()).await;
    assert_eq!(after, before, "nothing generated again");
}

/// A node without a replica of the original's shard reads the original over the internal RPC,
/// generates the thumbnail once, and then serves the one its shard group recorded.
#[tokio::test]
async fn a_node_without_a_replica_serves_thumbnails_too() {
    let cluster = TestCluster::start(Options {
        nodes: 4,
        ..Options::default()
    })
    .await;
    let png = png_with_alpha(1200, 600);
    let sha = upload(&cluster.node(1).client(), &png).await;
    let voters = crate::support::voters_of(&cluster.status().await, &sha);
    let outsider = cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .find(|id| !voters.contains(id))
        .expect("a node without a replica");
    let client = cluster.node(outsider).client();
    let path = format!("/objects/{sha}?size=thumb");
    let first = client.get(&path).await.unwrap();
    assert_eq!(first.status, 200, "{:?}", first.json());
    let image = image::load_from_memory(&first.body).expect("a PNG");
    assert_eq!((image.width(), image.height()), (256, 128));
    let again = client.get(&path).await.unwrap();
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("etag"), first.header("etag"));
    assert_eq!(
        generated(&client).await,
        1,
        "generated once at the outsider"
    );
    // A replica finds the outsider's record instead of generating its own.
    let replica = cluster.node(voters[0]).client();
    let theirs = replica.get(&path).await.unwrap();
    assert_eq!(theirs.header("etag"), first.header("etag"));
    assert_eq!(generated_everywhere(&cluster).await, 1);
}
