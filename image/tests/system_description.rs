//! The system description end to end: every bad description in `tests/bad-systems/` fails with
//! exactly the error in its `.expected` file; the real `image/system.toml` validates and survives
//! the binary table encoding unchanged; limits that need big files are checked on generated
//! descriptions; corrupted and truncated tables are rejected by the decoder without a panic.
//!
//! Adding a bad-description case is adding `NAME.toml` and `NAME.expected` to the folder.
//! `NC2DD_LONG_TESTS=1` adds a long random-corruption run of the decoder.

use std::fmt::Write as _;
use std::path::PathBuf;

use image::system::{self, Bdf, Claim, PciId, System};
use nc2dd_abi::system_table::{
    self as st, ChannelRecord, DecodeError, DeviceRecord, HEADER_LEN, Header, NotificationRecord,
    Section, Table, TaskRecord,
};

/// The servers the workspace builds, as the image tool passes them in.
const KNOWN: &[&str] = &["supervisor", "nic-ixgbe", "netback"];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_bad_system_fails_with_its_expected_error() {
    let dir = manifest_dir().join("tests/bad-systems");
    let mut cases = Vec::new();
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/bad-systems exists") {
        let path = entry.expect("readable directory").path();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => cases.push(stem),
            Some("expected") if !dir.join(format!("{stem}.toml")).exists() => orphans.push(stem),
            Some("expected") => {}
            _ => orphans.push(path.display().to_string()),
        }
    }
    assert!(
        orphans.is_empty(),
        "files without a partner or of an unknown kind: {orphans:?}"
    );
    cases.sort();
    assert!(cases.len() >= 25, "only {} bad descriptions", cases.len());

    let mut failures = String::new();
    for name in &cases {
        let text = std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap();
        let Ok(expected) = std::fs::read_to_string(dir.join(format!("{name}.expected"))) else {
            writeln!(failures, "{name}: no {name}.expected").unwrap();
            continue;
        };
        let expected = expected.trim_end_matches('\n');
        match system::parse(&text, &format!("{name}.toml"), KNOWN) {
            Ok(_) => writeln!(failures, "{name}: accepted, expected: {expected}").unwrap(),
            Err(e) if e.to_string() == expected => {}
            Err(e) => {
                writeln!(failures, "{name}:\n  expected: {expected}\n  got:      {e}").unwrap()
            }
        }
    }
    assert!(failures.is_empty(), "\n{failures}");
}

fn real_system() -> System {
    system::load(&manifest_dir().join("system.toml"), KNOWN).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_real_system_validates() {
    let sys = real_system();
    assert_eq!(sys.name(), "nc2dd");
    let names: Vec<&str> = sys.tasks().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["supervisor", "nic-ixgbe", "netback"]);
    assert_eq!(sys.servers(), ["supervisor", "nic-ixgbe", "netback"]);

    let sup = &sys.tasks()[0];
    assert!(sup.supervisor && sup.priority == 0 && sup.fault_bit.is_some());
    assert!(sup.devices.is_empty() && sup.xen.is_none());

    let nic = sys.task("nic-ixgbe").unwrap();
    assert_eq!(nic.devices.len(), 1);
    let dev = &nic.devices[0];
    let ids = [(0x8086, 0x10fb), (0x8086, 0x10c9)]
        .map(|(vendor, device)| PciId { vendor, device })
        .to_vec();
    assert_eq!(dev.claim, Claim::Ids(ids));
    assert_eq!(dev.bars, [0]);
    assert_eq!(
        dev.msix.len(),
        9,
        "the server's vectors: other, then one per VMDq pool of the 82576 (pool0..pool7)"
    );
    assert!(nic.xen.is_none() && nic.dma > 0);

    let with_xen: Vec<&str> = sys
        .tasks()
        .iter()
        .filter(|t| t.xen.is_some())
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(with_xen, ["netback"]);

    let [qp0] = sys.channels() else {
        panic!("one channel expected")
    };
    assert_eq!(qp0.name, "qp0");
    let mut ends = qp0.ends.map(|e| sys.tasks()[e.task].name.as_str());
    ends.sort();
    assert_eq!(ends, ["netback", "nic-ixgbe"]);
    assert!(sys.memory_used() <= sys.memory_budget());
}

#[test]
fn the_real_system_round_trips_through_the_table() {
    let sys = real_system();
    let bytes = sys.to_table();
    let table = Table::decode(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(System::from_table(&table), sys);
    assert_eq!(sys.to_table(), bytes, "encoding is deterministic");

    // The kernel's view agrees with the description without going through `System`.
    assert_eq!(table.supervisor().name, "supervisor");
    let nic = table.task(1).unwrap();
    assert_eq!((nic.name, nic.server), ("nic-ixgbe", "nic-ixgbe"));
    let dev = nic.devices().next().unwrap();
    assert_eq!(dev.bars().collect::<Vec<_>>(), [0]);
    assert_eq!(
        dev.msix_bits().collect::<Vec<_>>(),
        [
            "other", "pool0", "pool1", "pool2", "pool3", "pool4", "pool5", "pool6", "pool7"
        ]
        .map(|n| nic.bit(n).unwrap())
    );
    let netback = table.task(2).unwrap();
    assert_eq!(netback.xen.map(|x| x.event_bit), netback.bit("xen"));
    assert_eq!(table.channels().count(), 1);
    assert!(table.task(3).is_none());
}

/// Exercises what the real system does not: BDF claims, several channels, no timers, zero DMA.
const VARIED: &str = r#"
[system]
name = "varied"
memory-budget = 16777216

[[task]]
name = "jefe"
server = "supervisor"
priority = 0
supervisor = true
stack = 8192
heap = 0
notifications = { faults = 63, ctl = 7 }
fault = "faults"

[[task]]
name = "drv-a"
server = "nic-ixgbe"
priority = 3
stack = 4096
heap = 4096
dma = 1048576
notifications = { ctl = 1, q1 = 9, q0 = 8, irq-b = 33, irq-a = 32 }

[[task.device]]
name = "port0"
bdf = "0001:0a:1f.7"
bars = [4, 0, 2]
msix = ["irq-b", "irq-a"]

[[task.device]]
name = "port1"
pci = ["10ee:9038", "8086:1533", "8086:10c9"]
bars = [5]

[[task]]
name = "back"
server = "netback"
priority = 15
stack = 1048576
heap = 0
notifications = { q0 = 0, q1 = 1, ev = 2 }

[task.xen]
event = "ev"
grant-window = 0

[[channel]]
name = "ctl"
size = 4096
ends = [{ task = "jefe", kick = "ctl" }, { task = "drv-a", kick = "ctl" }]

[[channel]]
name = "q1"
size = 16777216
ends = [{ task = "drv-a", kick = "q1" }, { task = "back", kick = "q1" }]

[[channel]]
name = "q0"
size = 8192
ends = [{ task = "back", kick = "q0" }, { task = "drv-a", kick = "q0" }]
"#;

#[test]
fn a_varied_system_round_trips_through_the_table() {
    let budget_error = system::parse(VARIED, "varied.toml", KNOWN).unwrap_err();
    assert_eq!(budget_error.line(), Some(4), "{budget_error}");
    let text = VARIED.replace("memory-budget = 16777216", "memory-budget = 33554432");
    let sys = system::parse(&text, "varied.toml", KNOWN).unwrap_or_else(|e| panic!("{e}"));

    let drv = sys.task("drv-a").unwrap();
    let bits: Vec<u8> = drv.notifications.iter().map(|n| n.bit).collect();
    assert_eq!(bits, [1, 8, 9, 32, 33], "notifications are sorted by bit");
    assert_eq!(drv.devices[0].bars, [0, 2, 4]);
    assert_eq!(drv.devices[0].msix, [33, 32]);
    assert_eq!(
        drv.devices[0].claim,
        Claim::Bdf(Bdf {
            segment: 1,
            bus: 0x0a,
            device: 0x1f,
            function: 7
        })
    );
    assert_eq!(sys.tasks()[0].fault_bit, Some(63));

    let bytes = sys.to_table();
    let table = Table::decode(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(System::from_table(&table), sys);
}

#[test]
fn the_schema_example_in_the_module_docs_validates() {
    let source = std::fs::read_to_string(manifest_dir().join("src/system/mod.rs")).unwrap();
    let example: String = source
        .lines()
        .skip_while(|l| *l != "//! ```toml")
        .skip(1)
        .take_while(|l| *l != "//! ```")
        .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start_matches(' ')))
        .collect();
    assert!(example.contains("[[channel]]"), "example not found");
    let sys = system::parse(&example, "example.toml", KNOWN).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sys.tasks().len(), 3);
}

#[test]
fn load_names_the_file_it_cannot_read() {
    let path = manifest_dir().join("tests/no-such-system.toml");
    let e = system::load(&path, KNOWN).unwrap_err();
    assert_eq!(e.line(), None);
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read: ", path.display())),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Limits that need more text than a hand-written bad case.

/// A supervisor plus `others` tasks named t1.., each with the given extra lines.
fn generated(others: usize, extra: impl Fn(usize) -> String) -> String {
    let mut s = String::from(
        "[system]\nname = \"gen\"\nmemory-budget = 1073741824\n\n[[task]]\nname = \"sup\"\n\
         server = \"supervisor\"\npriority = 0\nsupervisor = true\nstack = 4096\nheap = 0\n\
         notifications = { fault = 0 }\nfault = \"fault\"\n",
    );
    for i in 1..=others {
        write!(
            s,
            "\n[[task]]\nname = \"t{i}\"\nserver = \"netback\"\npriority = 1\nstack = 4096\n\
             heap = 0\n{}",
            extra(i)
        )
        .unwrap();
    }
    s
}

/// Line of the `n`th (0-based) occurrence of `needle`.
fn line_of_nth(text: &str, needle: &str, n: usize) -> usize {
    let at = text.match_indices(needle).nth(n).expect("needle present").0;
    1 + text[..at].matches('\n').count()
}

fn error(text: &str) -> String {
    match system::parse(text, "gen.toml", KNOWN) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn at_most_32_tasks() {
    let ok = generated(31, |_| String::new());
    system::parse(&ok, "gen.toml", KNOWN).unwrap_or_else(|e| panic!("{e}"));
    let text = generated(32, |_| String::new());
    let line = line_of_nth(&text, "[[task]]", 32);
    assert_eq!(
        error(&text),
        format!("gen.toml:{line}: too many tasks: at most 32")
    );
}

#[test]
fn at_most_64_channels() {
    // Channel i joins t(i%3+1) and t((i+1)%3+1), each kicked on its own bit "c{i}".
    let pair = |i: usize| (i % 3 + 1, (i + 1) % 3 + 1);
    let build = |channels: usize| {
        let mut text = generated(3, |t| {
            let bits: Vec<String> = (0..channels)
                .filter(|&i| pair(i).0 == t || pair(i).1 == t)
                .enumerate()
                .map(|(bit, i)| format!("c{i} = {bit}"))
                .collect();
            format!("notifications = {{ {} }}\n", bits.join(", "))
        });
        for i in 0..channels {
            let (a, b) = pair(i);
            write!(
                text,
                "\n[[channel]]\nname = \"c{i}\"\nsize = 4096\nends = [{{ task = \"t{a}\", \
                 kick = \"c{i}\" }}, {{ task = \"t{b}\", kick = \"c{i}\" }}]\n"
            )
            .unwrap();
        }
        text
    };
    let ok = build(64);
    let sys = system::parse(&ok, "gen.toml", KNOWN).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        System::from_table(&Table::decode(&sys.to_table()).unwrap()),
        sys
    );
    let text = build(65);
    let line = line_of_nth(&text, "[[channel]]", 64);
    assert_eq!(
        error(&text),
        format!("gen.toml:{line}: too many channels: at most 64")
    );
}

#[test]
fn at_most_128_msix_vectors_in_all() {
    let text = generated(3, |t| {
        let names: Vec<String> = (0..44).map(|v| format!("v{v}")).collect();
        let bits: Vec<String> = (0..44).map(|v| format!("v{v} = {v}")).collect();
        format!(
            "notifications = {{ {} }}\n\n[[task.device]]\nname = \"d\"\nbdf = \"00:0{t}.0\"\n\
             bars = [0]\nmsix = [{}]\n",
            bits.join(", "),
            names
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    let line = line_of_nth(&text, "msix = ", 2);
    assert_eq!(
        error(&text),
        format!(
            "gen.toml:{line}: device \"d\" of task \"t3\" brings the system to 132 MSI-X vectors; \
             at most 128 in all"
        )
    );
}

#[test]
fn at_most_8_devices_per_task_and_16_ids_per_claim() {
    let devices = |n: usize| {
        generated(1, move |_| {
            (0..n)
                .map(|d| {
                    format!(
                        "\n[[task.device]]\nname = \"d{d}\"\nbdf = \"00:{d:02x}.0\"\nbars = [0]\n"
                    )
                })
                .collect()
        })
    };
    system::parse(&devices(8), "gen.toml", KNOWN).unwrap_or_else(|e| panic!("{e}"));
    let text = devices(9);
    let line = line_of_nth(&text, "[[task.device]]", 8);
    assert_eq!(
        error(&text),
        format!("gen.toml:{line}: task \"t1\" claims too many devices: at most 8")
    );

    let ids = |n: usize| {
        generated(1, move |_| {
            let ids: Vec<String> = (0..n)
                .map(|i| format!("\"8086:{:04x}\"", 0x1000 + i))
                .collect();
            format!(
                "\n[[task.device]]\nname = \"d\"\npci = [{}]\nbars = [0]\n",
                ids.join(", ")
            )
        })
    };
    system::parse(&ids(16), "gen.toml", KNOWN).unwrap_or_else(|e| panic!("{e}"));
    let text = ids(17);
    let line = line_of_nth(&text, "pci = ", 0);
    assert_eq!(
        error(&text),
        format!(
            "gen.toml:{line}: device \"d\" of task \"t1\" lists 17 PCI ids; it must list 1 to 16"
        )
    );
}

// ---------------------------------------------------------------------------------------------
// The decoder against damaged tables.

fn real_table() -> Vec<u8> {
    real_system().to_table()
}

/// Touches everything a decoded table exposes, as the kernel would at boot.
fn walk(table: &Table<'_>) -> usize {
    let mut n = table.name().len() + table.memory_budget() as usize % 7;
    for t in table.tasks() {
        n += t.name.len() + t.server.len() + usize::from(t.priority);
        n += t
            .notifications()
            .map(|x| x.name.len() + usize::from(x.bit))
            .sum::<usize>();
        for d in t.devices() {
            n += d.name.len() + d.bars().count() + d.msix_bits().count();
            if let st::Claim::Ids(ids) = d.claim {
                n += ids.iter().map(|i| usize::from(i.device)).sum::<usize>();
            }
        }
    }
    for c in table.channels() {
        n += c.name.len() + c.ends[0].task + c.ends[1].task;
    }
    n
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = real_table();
    for len in 0..bytes.len() {
        assert!(
            Table::decode(&bytes[..len]).is_err(),
            "truncated to {len} bytes was accepted"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        Table::decode(&longer).unwrap_err(),
        DecodeError::LengthMismatch {
            header: bytes.len() as u32,
            actual: bytes.len() + 1
        }
    );
}

#[test]
fn every_flipped_bit_is_caught() {
    let bytes = real_table();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut bad = bytes.clone();
            bad[i] ^= 1 << bit;
            assert!(
                Table::decode(&bad).is_err(),
                "byte {i} bit {bit} flipped was accepted"
            );
        }
    }
}

/// Corruptions with a recomputed checksum reach the structural checks; whatever they decide,
/// decoding and walking the result must not panic.
fn corrupt_and_walk(bytes: &[u8], edits: &[(usize, u8)]) -> bool {
    let mut bad = bytes.to_vec();
    for &(i, x) in edits {
        bad[i] ^= x;
    }
    st::seal(&mut bad);
    match Table::decode(&bad) {
        Ok(table) => {
            walk(&table);
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

#[test]
fn resealed_single_byte_corruptions_never_panic() {
    let bytes = real_table();
    let mut rejected = 0;
    let mut total = 0;
    for i in 0..bytes.len() {
        if (st::CHECKSUM_OFFSET..st::CHECKSUM_OFFSET + 4).contains(&i) {
            continue;
        }
        for x in [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff] {
            total += 1;
            if !corrupt_and_walk(&bytes, &[(i, x)]) {
                rejected += 1;
            }
        }
    }
    // Names, sizes and ids may change and still decode; most other damage must not.
    assert!(
        rejected * 2 > total,
        "only {rejected} of {total} corruptions were rejected"
    );
}

#[test]
fn random_multi_byte_corruptions_never_panic() {
    let long = std::env::var("NC2DD_LONG_TESTS").is_ok_and(|v| v == "1");
    let rounds = if long { 2_000_000 } else { 20_000 };
    let bytes = real_table();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..rounds {
        let edits: Vec<(usize, u8)> = (0..1 + next() % 4)
            .map(|_| {
                let r = next();
                ((r as usize >> 8) % bytes.len(), (r as u8) | 1)
            })
            .collect();
        corrupt_and_walk(&bytes, &edits);
    }
}

/// Where a section's records start, from the table's own directory.
fn section_offset(bytes: &[u8], section: Section) -> usize {
    let header: &[u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
    let index = Section::DIRECTORY
        .iter()
        .position(|&s| s == section)
        .unwrap();
    Header::from_bytes(header).sections[index].offset as usize
}

/// Applies `edit` to a copy of the real table, reseals it and decodes it.
fn decode_edited(edit: impl FnOnce(&mut Vec<u8>)) -> Result<(), DecodeError> {
    let mut bytes = real_table();
    edit(&mut bytes);
    st::seal(&mut bytes);
    Table::decode(&bytes).map(|_| ())
}

fn invalid(section: Section, index: usize, what: &'static str) -> Result<(), DecodeError> {
    Err(DecodeError::Invalid {
        section,
        index,
        what,
    })
}

#[test]
fn structural_damage_gets_a_specific_error() {
    assert_eq!(decode_edited(|b| b[0] = b'X'), Err(DecodeError::BadMagic));
    assert_eq!(
        decode_edited(|b| b[8] = 2),
        Err(DecodeError::UnsupportedVersion(2))
    );
    assert_eq!(
        decode_edited(|b| b[40] += 1), // tasks section offset
        Err(DecodeError::BadSection {
            section: Section::Tasks,
            why: "does not start where the previous section ends"
        })
    );
    assert_eq!(
        decode_edited(|b| b[84] = 0xff), // msix count: runs past the end
        Err(DecodeError::BadSection {
            section: Section::Msix,
            why: "extends past the end of the table"
        })
    );
    assert_eq!(
        decode_edited(|b| {
            let at = section_offset(b, Section::Strings);
            b[at] = 0xff;
        }),
        Err(DecodeError::BadUtf8)
    );
    assert_eq!(
        decode_edited(|b| {
            let at = section_offset(b, Section::Channels);
            let mut rec =
                ChannelRecord::from_bytes(b[at..at + ChannelRecord::LEN].try_into().unwrap());
            rec.ends[1].task = 3;
            b[at..at + ChannelRecord::LEN].copy_from_slice(&rec.to_bytes());
        }),
        invalid(Section::Channels, 0, "end names a task that does not exist")
    );
    assert_eq!(
        decode_edited(|b| {
            let at = section_offset(b, Section::Channels);
            let mut rec =
                ChannelRecord::from_bytes(b[at..at + ChannelRecord::LEN].try_into().unwrap());
            rec.ends[1].task = rec.ends[0].task;
            b[at..at + ChannelRecord::LEN].copy_from_slice(&rec.to_bytes());
        }),
        invalid(Section::Channels, 0, "both ends are the same task")
    );
    assert_eq!(
        decode_edited(|b| {
            let at = section_offset(b, Section::Notifications);
            let mut rec = NotificationRecord::from_bytes(
                b[at..at + NotificationRecord::LEN].try_into().unwrap(),
            );
            rec.bit = 64;
            b[at..at + NotificationRecord::LEN].copy_from_slice(&rec.to_bytes());
        }),
        invalid(Section::Notifications, 0, "bad name or bit")
    );
    assert_eq!(
        decode_edited(|b| {
            let at = section_offset(b, Section::Devices);
            let mut rec =
                DeviceRecord::from_bytes(b[at..at + DeviceRecord::LEN].try_into().unwrap());
            rec.bar_mask |= 1 << 6;
            b[at..at + DeviceRecord::LEN].copy_from_slice(&rec.to_bytes());
        }),
        invalid(Section::Devices, 0, "BAR index out of range")
    );
    let task = |index: usize, edit: fn(&mut TaskRecord)| {
        decode_edited(move |b| {
            let at = section_offset(b, Section::Tasks) + index * TaskRecord::LEN;
            let mut rec = TaskRecord::from_bytes(b[at..at + TaskRecord::LEN].try_into().unwrap());
            edit(&mut rec);
            b[at..at + TaskRecord::LEN].copy_from_slice(&rec.to_bytes());
        })
    };
    assert_eq!(
        task(1, |t| t.flags |= st::TASK_SUPERVISOR),
        invalid(
            Section::Tasks,
            1,
            "the supervisor must be task 0 and only task 0"
        )
    );
    assert_eq!(
        task(1, |t| t.name.offset = 1 << 20),
        invalid(Section::Tasks, 1, "bad name")
    );
    assert_eq!(
        task(2, |t| t.devices.count = 40),
        invalid(Section::Tasks, 2, "device range out of bounds")
    );
    assert_eq!(
        task(2, |t| t.heap += 1),
        invalid(
            Section::Tasks,
            2,
            "stack, heap or DMA size out of range or not page-aligned"
        )
    );
    assert_eq!(
        task(0, |t| t.timer_bit = 64),
        invalid(Section::Tasks, 0, "timer bit out of range")
    );
    assert_eq!(
        task(1, |t| t.grant_window = 4096),
        invalid(Section::Tasks, 1, "Xen fields set without Xen rights")
    );
}

#[test]
fn decode_errors_read_well() {
    let e = DecodeError::Invalid {
        section: Section::Channels,
        index: 0,
        what: "both ends are the same task",
    };
    assert_eq!(
        e.to_string(),
        "system table channels record 0: both ends are the same task"
    );
}
