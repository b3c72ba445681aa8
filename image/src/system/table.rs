//! `System` <-> binary system table (`nc2dd_abi::system_table`, which documents the layout).
//! The encoder lays sections out in directory order right after the header, stores each distinct
//! string once, and seals the checksum. Counts fit the table's `u16` ranges because the
//! validator's limits (tasks, devices, ids, vectors, notifications) are far below 65536.

use std::collections::HashMap;

use nc2dd_abi::system_table::{
    self as st, ChannelRecord, DEVICE_BY_BDF, DEVICE_BY_IDS, DeviceRecord, EndRecord, HEADER_LEN,
    Header, NO_BIT, NotificationRecord, PciIdRecord, Range16, Section, SectionEntry, StrRef,
    TASK_SUPERVISOR, TASK_XEN, Table, TaskRecord,
};

use super::{Channel, ChannelEnd, Claim, Device, Notification, System, Task, XenRights};

/// The strings section, each distinct string stored once.
#[derive(Default)]
struct Strings {
    bytes: Vec<u8>,
    seen: HashMap<String, StrRef>,
}

impl Strings {
    fn add(&mut self, s: &str) -> StrRef {
        if let Some(r) = self.seen.get(s) {
            return *r;
        }
        let r = StrRef {
            offset: to_u32(self.bytes.len()),
            len: to_u32(s.len()),
        };
        self.bytes.extend_from_slice(s.as_bytes());
        self.seen.insert(s.to_string(), r);
        r
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("system tables are far smaller than 4 GiB")
}

fn to_u16(n: usize) -> u16 {
    u16::try_from(n).expect("validated limits keep table counts below 65536")
}

fn range(first: usize, count: usize) -> Range16 {
    Range16 {
        first: to_u16(first),
        count: to_u16(count),
    }
}

impl System {
    /// The binary table the kernel reads at boot.
    pub fn to_table(&self) -> Vec<u8> {
        let mut strings = Strings::default();
        let name = strings.add(&self.name);
        let mut tasks = Vec::new();
        let mut notifications = Vec::new();
        let mut devices = Vec::new();
        let mut pci_ids = Vec::new();
        let mut msix = Vec::new();
        for t in &self.tasks {
            let first_notification = notifications.len();
            for n in &t.notifications {
                notifications.extend(
                    NotificationRecord {
                        name: strings.add(&n.name),
                        bit: n.bit,
                        reserved: [0; 3],
                    }
                    .to_bytes(),
                );
            }
            let first_device = devices.len() / DeviceRecord::LEN;
            for d in &t.devices {
                let mut rec = DeviceRecord {
                    name: strings.add(&d.name),
                    bar_mask: d.bars.iter().fold(0, |m, &b| m | 1 << b),
                    msix: range(msix.len(), d.msix.len()),
                    ..DeviceRecord::default()
                };
                msix.extend_from_slice(&d.msix);
                match &d.claim {
                    Claim::Ids(ids) => {
                        rec.kind = DEVICE_BY_IDS;
                        rec.pci_ids = range(pci_ids.len() / PciIdRecord::LEN, ids.len());
                        for id in ids {
                            pci_ids.extend(id.to_bytes());
                        }
                    }
                    Claim::Bdf(b) => {
                        rec.kind = DEVICE_BY_BDF;
                        rec.segment = b.segment;
                        rec.bus = b.bus;
                        rec.device = b.device;
                        rec.function = b.function;
                    }
                }
                devices.extend(rec.to_bytes());
            }
            let mut flags = 0;
            if t.supervisor {
                flags |= TASK_SUPERVISOR;
            }
            if t.xen.is_some() {
                flags |= TASK_XEN;
            }
            let rec = TaskRecord {
                name: strings.add(&t.name),
                server: strings.add(&t.server),
                priority: t.priority,
                flags,
                fault_bit: t.fault_bit.unwrap_or(NO_BIT),
                timer_bit: t.timer_bit.unwrap_or(NO_BIT),
                xen_event_bit: t.xen.map_or(NO_BIT, |x| x.event_bit),
                reserved: [0; 3],
                stack: t.stack,
                heap: t.heap,
                dma: t.dma,
                grant_window: t.xen.map_or(0, |x| x.grant_window),
                notifications: range(
                    first_notification / NotificationRecord::LEN,
                    t.notifications.len(),
                ),
                devices: range(first_device, t.devices.len()),
            };
            tasks.extend(rec.to_bytes());
        }
        let mut channels = Vec::new();
        for c in &self.channels {
            let end = |e: &ChannelEnd| EndRecord {
                task: to_u16(e.task),
                kick_bit: e.kick_bit,
                reserved: 0,
            };
            let rec = ChannelRecord {
                name: strings.add(&c.name),
                size: c.size,
                ends: [end(&c.ends[0]), end(&c.ends[1])],
            };
            channels.extend(rec.to_bytes());
        }

        let bodies: [&[u8]; 7] = [
            &tasks,
            &notifications,
            &channels,
            &devices,
            &pci_ids,
            &msix,
            &strings.bytes,
        ];
        let mut header = Header {
            magic: st::MAGIC,
            version: st::VERSION,
            memory_budget: self.memory_budget,
            name,
            ..Header::default()
        };
        let mut at = HEADER_LEN;
        for ((entry, body), section) in header
            .sections
            .iter_mut()
            .zip(bodies)
            .zip(Section::DIRECTORY)
        {
            *entry = SectionEntry {
                offset: to_u32(at),
                count: to_u32(body.len() / section.record_len()),
            };
            at += body.len();
        }
        header.total_len = to_u32(at);
        let mut out = Vec::with_capacity(at);
        out.extend(header.to_bytes());
        for body in bodies {
            out.extend_from_slice(body);
        }
        st::seal(&mut out);
        out
    }

    /// The system a decoded table describes. For a table made by [`System::to_table`] this is the
    /// system it was made from. A table only passes structural checks when decoded, so a system
    /// built from a foreign table has not been through the description's semantic rules.
    pub fn from_table(table: &Table<'_>) -> System {
        let tasks = table
            .tasks()
            .map(|t| Task {
                name: t.name.to_string(),
                server: t.server.to_string(),
                priority: t.priority,
                supervisor: t.supervisor,
                stack: t.stack,
                heap: t.heap,
                dma: t.dma,
                notifications: t
                    .notifications()
                    .map(|n| Notification {
                        name: n.name.to_string(),
                        bit: n.bit,
                    })
                    .collect(),
                fault_bit: t.fault_bit,
                timer_bit: t.timer_bit,
                devices: t
                    .devices()
                    .map(|d| Device {
                        name: d.name.to_string(),
                        claim: match d.claim {
                            st::Claim::Ids(ids) => Claim::Ids(ids.iter().collect()),
                            st::Claim::Bdf(b) => Claim::Bdf(b),
                        },
                        bars: d.bars().collect(),
                        msix: d.msix_bits().collect(),
                    })
                    .collect(),
                xen: t.xen.map(|x| XenRights {
                    event_bit: x.event_bit,
                    grant_window: x.grant_window,
                }),
            })
            .collect();
        let channels = table
            .channels()
            .map(|c| Channel {
                name: c.name.to_string(),
                size: c.size,
                ends: c.ends.map(|e| ChannelEnd {
                    task: e.task,
                    kick_bit: e.kick_bit,
                }),
            })
            .collect();
        System {
            name: table.name().to_string(),
            memory_budget: table.memory_budget(),
            tasks,
            channels,
        }
    }
}
