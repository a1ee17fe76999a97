//! Unit tests of the storage: reads and writes across files, direct writes,
//! the check, and the refusals of the safe opening and the handle cache.

use std::fs;
use std::path::Path;

use sha1::{Digest, Sha1};

use super::*;
use crate::metainfo::Metainfo;
use handles::{Handles, OpenFile};

fn multi_meta(lengths: &[u64], piece_len: u64, data: &[u8]) -> Metainfo {
    let mut files = String::new();
    for (i, len) in lengths.iter().enumerate() {
        files += &format!("d6:lengthi{len}e4:pathl3:dir4:f{i:03}ee");
    }
    let hashes: Vec<u8> = data
        .chunks(piece_len as usize)
        .flat_map(|c| <[u8; 20]>::from(Sha1::digest(c)))
        .collect();
    let mut bytes = format!(
        "d4:infod5:filesl{files}e4:name4:root12:piece lengthi{piece_len}e6:pieces{}:",
        hashes.len()
    )
    .into_bytes();
    bytes.extend(&hashes);
    bytes.extend(b"ee");
    Metainfo::from_bytes(&bytes).unwrap()
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn writes_pieces_across_files_and_reads_them_back() {
    let data = content(100);
    let meta = multi_meta(&[10, 0, 45, 45], 32, &data);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let storage = Storage::open(&meta, &root, Access::ReadWrite).unwrap();
    assert_eq!(fs::metadata(root.join("dir/f001")).unwrap().len(), 0);
    for index in 0..4u32 {
        let start = index as usize * 32;
        storage
            .write_piece(index, &data[start..(start + 32).min(100)])
            .unwrap();
    }
    let mut back = Vec::new();
    storage.read_piece(1, &mut back).unwrap();
    assert_eq!(back, &data[32..64]);
    let on_disk: Vec<u8> = (0..4)
        .flat_map(|i| fs::read(root.join(format!("dir/f{i:03}"))).unwrap())
        .collect();
    assert_eq!(on_disk, data);
}

#[test]
fn direct_writes_put_every_byte_in_place_across_aligned_and_unaligned_files() {
    // Files that start and end on and off 4 KiB boundaries, so pieces
    // are written partly direct and partly through the page cache.
    let lengths = [5000, 0, 70_000, 12_288, 3];
    let data = content(lengths.iter().sum::<u64>() as usize);
    let meta = multi_meta(&lengths, 16384, &data);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut storage = Storage::open(&meta, &root, Access::ReadWrite).unwrap();
    let direct = storage.enable_direct_writes();
    // Where the file system refuses O_DIRECT (tmpfs on old kernels) this
    // checks the fallback instead.
    eprintln!("{direct} of 4 non-empty files opened for direct writes");
    let count = meta.layout.piece_count();
    // Out of order, as a swarm delivers them.
    for index in (0..count).rev() {
        let start = index as usize * 16384;
        let end = (start + 16384).min(data.len());
        storage.write_piece(index, &data[start..end]).unwrap();
    }
    storage.sync().unwrap();
    let mut back = Vec::new();
    for index in 0..count {
        storage.read_piece(index, &mut back).unwrap();
        let start = index as usize * 16384;
        assert_eq!(
            back,
            data[start..(start + 16384).min(data.len())],
            "piece {index}"
        );
    }
    let on_disk: Vec<u8> = (0..lengths.len())
        .flat_map(|i| fs::read(root.join(format!("dir/f{i:03}"))).unwrap())
        .collect();
    assert_eq!(on_disk, data);
}

#[test]
fn seeding_storage_never_opens_files_for_writing() {
    let data = content(8192);
    let meta = multi_meta(&[8192], 4096, &data);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("dir")).unwrap();
    fs::write(root.join("dir/f000"), &data).unwrap();
    let mut storage = Storage::open(&meta, &root, Access::ReadOnly).unwrap();
    assert_eq!(storage.enable_direct_writes(), 0);
    assert!(storage.write_piece(0, &data[..4096]).is_err());
}

#[test]
fn check_finds_exactly_the_correct_pieces() {
    let data = content(100);
    let meta = multi_meta(&[60, 40], 16, &data);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("dir")).unwrap();
    let mut first = data[..60].to_vec();
    first[20] ^= 0xff; // corrupt piece 1
    fs::write(root.join("dir/f000"), first).unwrap();
    fs::write(root.join("dir/f001"), &data[60..]).unwrap();
    let storage = Storage::open(&meta, &root, Access::ReadOnly).unwrap();
    let have = storage.check(&meta.piece_hashes, 2, &|_| {}).unwrap();
    let expected: Vec<bool> = (0..7).map(|i| i != 1).collect();
    assert_eq!(have, expected);
}

#[test]
fn read_only_open_of_missing_file_names_it() {
    let data = content(20);
    let meta = multi_meta(&[20], 16, &data);
    let dir = tempfile::tempdir().unwrap();
    let e = Storage::open(&meta, dir.path(), Access::ReadOnly)
        .err()
        .unwrap();
    assert_eq!(e.action, "open");
    assert!(e.to_string().contains("f000"), "{e}");
}

#[test]
fn read_only_open_of_wrong_length_is_error() {
    let data = content(20);
    let meta = multi_meta(&[20], 16, &data);
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("dir")).unwrap();
    fs::write(dir.path().join("dir/f000"), b"short").unwrap();
    let e = Storage::open(&meta, dir.path(), Access::ReadOnly)
        .err()
        .unwrap();
    assert!(e.source.to_string().contains("5 bytes"), "{}", e.source);
}

/// A download's options with `budget` descriptors and nothing allowed.
fn download_options(budget: usize) -> StorageOptions {
    StorageOptions {
        max_open_fds: budget,
        ..StorageOptions::new(Access::ReadWrite)
    }
}

/// Content, mtime and length of a file outside DEST, to compare after.
fn snapshot(path: &Path) -> (Vec<u8>, std::time::SystemTime) {
    (
        fs::read(path).unwrap(),
        fs::metadata(path).unwrap().modified().unwrap(),
    )
}

#[test]
fn many_files_through_a_small_handle_cache_stay_within_it_and_keep_every_byte() {
    let lengths: Vec<u64> = (0..40).map(|i| (i * 37 % 300) as u64).collect();
    let data = content(lengths.iter().sum::<u64>() as usize);
    let meta = multi_meta(&lengths, 64, &data);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut storage = Storage::open_with(&meta, &root, download_options(6)).unwrap();
    assert!(matches!(storage.handles, Handles::Cached(_)));
    storage.enable_direct_writes();
    let count = meta.layout.piece_count();
    for index in (0..count).rev() {
        let start = index as usize * 64;
        storage
            .write_piece(index, &data[start..(start + 64).min(data.len())])
            .unwrap();
        assert!(
            storage.handles.open_fds() <= 6,
            "{}",
            storage.handles.open_fds()
        );
    }
    storage.sync().unwrap();
    let mut back = Vec::new();
    for index in 0..count {
        storage.read_piece(index, &mut back).unwrap();
        let start = index as usize * 64;
        assert_eq!(back, data[start..(start + 64).min(data.len())]);
    }
    let on_disk: Vec<u8> = (0..lengths.len())
        .flat_map(|i| fs::read(root.join(format!("dir/f{i:03}"))).unwrap())
        .collect();
    assert_eq!(on_disk, data);
}

#[test]
fn a_single_file_torrent_keeps_its_file_open_without_the_cache() {
    let data = content(5000);
    let meta = multi_meta(&[5000], 4096, &data);
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open_with(&meta, &dir.path().join("root"), download_options(4)).unwrap();
    assert!(matches!(storage.handles, Handles::Pinned(_)));
}

#[test]
fn a_file_replaced_while_its_handle_was_closed_is_refused_on_reopen() {
    let lengths = [10u64; 8];
    let data = content(80);
    let meta = multi_meta(&lengths, 16, &data);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let storage = Storage::open_with(&meta, &root, download_options(4)).unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, b"precious!!").unwrap();
    let target = root.join("dir/f000");
    fs::remove_file(&target).unwrap();
    std::os::unix::fs::symlink(&victim, &target).unwrap();
    let e = storage.write_piece(0, &data[..16]).unwrap_err();
    assert!(
        e.source.to_string().contains("symbolic link"),
        "{}",
        e.source
    );
    assert_eq!(e.path, target);
    assert_eq!(fs::read(&victim).unwrap(), b"precious!!");
}

#[test]
fn a_symbolic_link_to_a_file_below_dest_is_refused_and_its_target_untouched() {
    let data = content(20);
    let meta = multi_meta(&[20], 16, &data);
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, vec![7u8; 100]).unwrap();
    let before = snapshot(&victim);
    let root = dir.path().join("dest/root");
    fs::create_dir_all(root.join("dir")).unwrap();
    std::os::unix::fs::symlink(&victim, root.join("dir/f000")).unwrap();
    let e = Storage::open_with(&meta, &root, download_options(64))
        .err()
        .unwrap();
    assert_eq!(e.path, root.join("dir/f000"));
    assert!(
        e.source.to_string().contains("symbolic link"),
        "{}",
        e.source
    );
    assert_eq!(snapshot(&victim), before);
}

#[test]
fn a_symbolic_link_to_a_folder_below_dest_is_refused_and_nothing_is_made_there() {
    let data = content(20);
    let meta = multi_meta(&[20], 16, &data);
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let root = dir.path().join("dest/root");
    fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join("dir")).unwrap();
    let e = Storage::open_with(&meta, &root, download_options(64))
        .err()
        .unwrap();
    assert_eq!(e.path, root.join("dir"));
    assert!(
        e.source.to_string().contains("symbolic link"),
        "{}",
        e.source
    );
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn dest_itself_may_be_a_symbolic_link() {
    let data = content(20);
    let meta = multi_meta(&[20], 16, &data);
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, dir.path().join("dest")).unwrap();
    let storage =
        Storage::open_with(&meta, &dir.path().join("dest/root"), download_options(64)).unwrap();
    storage.write_piece(0, &data[..16]).unwrap();
    assert_eq!(
        fs::read(real.join("root/dir/f000")).unwrap()[..16],
        data[..16]
    );
}

#[test]
fn a_hard_linked_file_is_refused_unless_allowed() {
    let data = content(20);
    let meta = multi_meta(&[20], 16, &data);
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-name");
    fs::write(&other, vec![1u8; 20]).unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("dir")).unwrap();
    fs::hard_link(&other, root.join("dir/f000")).unwrap();
    let e = Storage::open_with(&meta, &root, download_options(64))
        .err()
        .unwrap();
    assert!(e.source.to_string().contains("hard links"), "{}", e.source);
    let mut options = download_options(64);
    options.allow.hard_links = true;
    assert!(Storage::open_with(&meta, &root, options).is_ok());
}

#[test]
fn a_longer_existing_file_is_refused_unless_overwrite_is_allowed() {
    let data = content(20);
    let meta = multi_meta(&[20], 16, &data);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("dir")).unwrap();
    let path = root.join("dir/f000");
    fs::write(&path, vec![9u8; 50]).unwrap();
    let before = snapshot(&path);
    let e = Storage::open_with(&meta, &root, download_options(64))
        .err()
        .unwrap();
    let why = e.source.to_string();
    assert!(why.contains("50 bytes") && why.contains("20"), "{why}");
    assert_eq!(snapshot(&path), before);
    let mut options = download_options(64);
    options.allow.overwrite = true;
    Storage::open_with(&meta, &root, options).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), 20);
}

#[test]
fn a_fifo_is_refused_in_both_modes_without_blocking() {
    let data = content(20);
    let meta = multi_meta(&[20], 16, &data);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("dir")).unwrap();
    let fifo = root.join("dir/f000");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    for access in [Access::ReadWrite, Access::ReadOnly] {
        let e = Storage::open_with(&meta, &root, StorageOptions::new(access))
            .err()
            .unwrap();
        assert_eq!(e.path, fifo);
        assert!(
            e.source.to_string().contains("fifo"),
            "{access:?}: {}",
            e.source
        );
    }
}

#[test]
fn the_budget_leaves_room_for_peers_and_stays_within_bounds() {
    // Each connection holds its socket and its thread's eventfd.
    assert_eq!(file_handle_budget(Some(1024), 50), (1024 - 2 * 50 - 64) / 2);
    assert_eq!(
        file_handle_budget(Some(1024), 400),
        (1024 - 2 * 400 - 64) / 2
    );
    assert_eq!(file_handle_budget(Some(228), 50), 32);
    assert_eq!(file_handle_budget(Some(16), 50), 4);
    assert_eq!(file_handle_budget(None, 50), 512);
    assert_eq!(file_handle_budget(Some(1 << 20), 50), 512);
}

#[test]
fn the_handle_cache_gives_back_its_oldest_handle_when_the_process_is_out_of_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let handles = Handles::cached(3, 8);
    let opened = std::cell::Cell::new(0);
    let open_ok = || {
        opened.set(opened.get() + 1);
        Ok(OpenFile {
            file: tempfile::tempfile_in(dir.path()).unwrap(),
            direct: None,
        })
    };
    drop(handles.get(0, false, open_ok).unwrap());
    drop(handles.get(1, false, open_ok).unwrap());
    let mut emfile_once = true;
    let third = handles.get(2, true, || {
        if std::mem::take(&mut emfile_once) {
            return Err(error(
                Path::new("f2"),
                "open",
                io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error()),
            ));
        }
        open_ok()
    });
    assert!(third.is_ok());
    drop(third);
    assert_eq!(handles.open_fds(), 2, "file 0 was closed to make room");
    assert_eq!(opened.get(), 3);
    drop(handles.get(1, false, open_ok).unwrap());
    assert_eq!(opened.get(), 3, "file 1 stayed open");
    drop(handles.get(0, false, open_ok).unwrap());
    assert_eq!(opened.get(), 4, "file 0 was reopened");
    assert_eq!(handles.written(), [2]);
}

#[test]
fn a_selection_creates_only_the_chosen_files_and_keeps_shared_bytes_apart() {
    // f000 0..10, f001 empty, f002 10..55, f003 55..100; 32-byte pieces:
    // piece 0 holds f000 and f002, piece 1 f002 and f003.
    let data = content(100);
    let meta = multi_meta(&[10, 0, 45, 45], 32, &data);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let options = StorageOptions::new(Access::ReadWrite);
    let only_last = [false, false, false, true];
    let storage = Storage::open_selected(&meta, &root, options, &only_last).unwrap();
    assert_eq!(storage.unwanted().iter().collect::<Vec<_>>(), [0]);
    assert_eq!(storage.wanted_len(), 100 - 32);
    for index in 1..4u32 {
        let start = index as usize * 32;
        storage
            .write_piece(index, &data[start..(start + 32).min(100)])
            .unwrap();
    }
    let mut names: Vec<_> = fs::read_dir(root.join("dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["f003"], "no other file is created");
    assert_eq!(fs::read(root.join("dir/f003")).unwrap(), &data[55..]);
    // Slot 1 (piece 1) holds f002's last bytes at their place in the piece.
    let parts = fs::read(dir.path().join(".root.parts")).unwrap();
    assert_eq!(parts.len(), 64);
    assert_eq!(parts[32..55], data[32..55]);
    assert!(parts[..32].iter().chain(&parts[55..]).all(|&b| b == 0));
    let mut back = Vec::new();
    storage.read_piece(1, &mut back).unwrap();
    assert_eq!(back, &data[32..64]);
    let hashes = meta.piece_hashes.clone();
    assert_eq!(
        storage.check(&hashes, 2, &|_| {}).unwrap(),
        [false, true, true, true]
    );
    storage.sync().unwrap();
    drop(storage);

    // f002 chosen too: it starts with what the part file kept of it, so
    // piece 1 still verifies; piece 0 (f000's bytes never fetched) does not.
    let wider = [false, false, true, true];
    let storage = Storage::open_selected(&meta, &root, options, &wider).unwrap();
    assert!(storage.had_data());
    assert_eq!(fs::read(root.join("dir/f002")).unwrap()[22..], data[32..55]);
    assert_eq!(
        storage.check(&hashes, 2, &|_| {}).unwrap(),
        [false, true, true, true]
    );
    assert!(!root.join("dir/f000").exists());
}

#[test]
fn a_part_file_that_is_a_symbolic_link_is_refused() {
    let data = content(100);
    let meta = multi_meta(&[10, 0, 45, 45], 32, &data);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("elsewhere");
    fs::write(&target, b"keep").unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join(".root.parts")).unwrap();
    let options = StorageOptions::new(Access::ReadWrite);
    let e = Storage::open_selected(
        &meta,
        &dir.path().join("root"),
        options,
        &[false, false, false, true],
    )
    .err()
    .expect("refused");
    assert!(
        e.source.to_string().contains("symbolic link"),
        "{e}: {}",
        e.source
    );
    assert_eq!(fs::read(&target).unwrap(), b"keep");
}
