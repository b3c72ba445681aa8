//! Turns the raw description into a [`System`], enforcing every rule listed in the module header
//! of `system/mod.rs`. The first problem found is returned. Checks run in file order (each task
//! completely, then the channels), so an error points at the first line that is wrong; the
//! whole-file rules come last (every notification has a source, the memory budget), except
//! "some task is the supervisor", which comes first because without it the per-task rules would
//! blame the wrong line (the would-be supervisor's priority 0).

use std::collections::HashMap;
use std::ops::Range;

use nc2dd_abi::system_table::{
    Bdf, MAX_BARS, MAX_CHANNEL_SIZE, MAX_CHANNELS, MAX_DEVICES_PER_TASK, MAX_DMA, MAX_GRANT_WINDOW,
    MAX_HEAP, MAX_MSIX_PER_DEVICE, MAX_MSIX_TOTAL, MAX_NAME_LEN, MAX_PCI_IDS_PER_DEVICE,
    MAX_PRIORITY, MAX_STACK, MAX_TASKS, MIN_STACK, NOTIFICATION_BITS, PAGE_SIZE,
    PciIdRecord as PciId,
};
use toml::Spanned;

use super::error::line_of;
use super::raw::{RawChannel, RawDevice, RawFile, RawTask};
use super::{
    Channel, ChannelEnd, Claim, Device, Notification, System, SystemError, Task, XenRights,
};

/// The budget is a host-side sanity bound, not a kernel limit.
const MAX_MEMORY_BUDGET: u64 = 1 << 40;

pub(super) fn validate(
    raw: RawFile,
    text: &str,
    file: &str,
    known_servers: &[&str],
) -> Result<System, SystemError> {
    let mut v = Validator {
        text,
        file,
        known_servers,
        task_names: HashMap::new(),
        bits: Vec::new(),
        claims: HashMap::new(),
        msix_total: 0,
    };
    let system = raw.system.get_ref();
    let name = v.name(&system.name, "system name", "")?;
    let memory_budget = v.size(
        &system.memory_budget,
        "memory budget",
        PAGE_SIZE,
        MAX_MEMORY_BUDGET,
    )?;

    if raw.task.is_empty() {
        return Err(v.err(
            raw.system.span(),
            "no tasks: a system needs at least its supervisor",
        ));
    }
    let marked = |t: &Spanned<RawTask>| {
        t.get_ref()
            .supervisor
            .as_ref()
            .is_some_and(|s| *s.get_ref())
    };
    if !raw.task.iter().any(marked) {
        return Err(v.err(
            raw.task[0].span(),
            "no task is the supervisor: mark the first task with supervisor = true",
        ));
    }
    let mut tasks = Vec::with_capacity(raw.task.len());
    for (index, t) in raw.task.iter().enumerate() {
        if index == MAX_TASKS {
            return Err(v.err(t.span(), format!("too many tasks: at most {MAX_TASKS}")));
        }
        tasks.push(v.task(index, t, &tasks)?);
    }

    let mut channels = Vec::with_capacity(raw.channel.len());
    let mut channel_lines: HashMap<String, usize> = HashMap::new();
    for (index, c) in raw.channel.iter().enumerate() {
        if index == MAX_CHANNELS {
            return Err(v.err(
                c.span(),
                format!("too many channels: at most {MAX_CHANNELS}"),
            ));
        }
        channels.push(v.channel(c, &tasks, &mut channel_lines)?);
    }

    for (task, bits) in tasks.iter().zip(&v.bits) {
        if let Some(unused) = bits.iter().find(|b| b.source.is_none()) {
            return Err(v.err(
                unused.span.clone(),
                format!(
                    "notification \"{}\" (bit {}) of task \"{}\" has no source: nothing posts it",
                    unused.name, unused.bit, task.name
                ),
            ));
        }
    }

    let system = System {
        name,
        memory_budget,
        tasks,
        channels,
    };
    let used = system.memory_used();
    if used > memory_budget {
        let sum = |f: fn(&Task) -> u64| system.tasks.iter().map(f).sum::<u64>();
        return Err(v.err(
            raw.system.get_ref().memory_budget.span(),
            format!(
                "tasks and channels need {used} bytes (stacks {}, heaps {}, DMA {}, channels {}) \
                 but the memory budget is {memory_budget}",
                sum(|t| t.stack),
                sum(|t| t.heap),
                sum(|t| t.dma),
                system.channels.iter().map(|c| c.size).sum::<u64>(),
            ),
        ));
    }
    Ok(system)
}

/// A named bit of one task and what posts it (once found).
struct Bit {
    name: String,
    bit: u8,
    span: Range<usize>,
    /// Description of the source and its line.
    source: Option<(String, usize)>,
}

/// What a device claim selects, for the at-most-one-owner rule.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum ClaimKey {
    Id(PciId),
    Bdf(Bdf),
}

struct Validator<'t> {
    text: &'t str,
    file: &'t str,
    known_servers: &'t [&'t str],
    /// Task name -> (index, line of its name).
    task_names: HashMap<String, (usize, usize)>,
    /// Per task index, its named bits in file order.
    bits: Vec<Vec<Bit>>,
    /// Who claimed what: description and line.
    claims: HashMap<ClaimKey, (String, usize)>,
    msix_total: usize,
}

impl Validator<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> SystemError {
        SystemError::at(self.file, self.text, span, message.into())
    }

    fn line(&self, span: Range<usize>) -> usize {
        line_of(self.text, span.start)
    }

    /// Checks the name rules; an error reads `invalid {kind} "{name}"{owner}: ...`.
    fn name(&self, s: &Spanned<String>, kind: &str, owner: &str) -> Result<String, SystemError> {
        self.name_at(s.get_ref(), s.span(), kind, owner)
    }

    fn name_at(
        &self,
        n: &str,
        span: Range<usize>,
        kind: &str,
        owner: &str,
    ) -> Result<String, SystemError> {
        let ok = n.len() <= MAX_NAME_LEN
            && n.starts_with(|c: char| c.is_ascii_lowercase())
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(n.to_string())
        } else {
            Err(self.err(
                span,
                format!(
                    "invalid {kind} \"{n}\"{owner}: use 1 to {MAX_NAME_LEN} characters of a-z, \
                     0-9 and '-', starting with a letter"
                ),
            ))
        }
    }

    /// A byte size in `min..=max` that is a whole number of pages.
    fn size(&self, s: &Spanned<i64>, what: &str, min: u64, max: u64) -> Result<u64, SystemError> {
        let n = *s.get_ref();
        let Ok(bytes) = u64::try_from(n) else {
            return Err(self.err(s.span(), format!("{what} is negative ({n})")));
        };
        if bytes < min {
            return Err(self.err(
                s.span(),
                format!("{what} is {bytes} bytes, less than the {min} required"),
            ));
        }
        if bytes > max {
            return Err(self.err(
                s.span(),
                format!("{what} is {bytes} bytes, more than the {max} allowed"),
            ));
        }
        if !bytes.is_multiple_of(PAGE_SIZE) {
            return Err(self.err(
                s.span(),
                format!("{what} ({bytes} bytes) is not a multiple of the {PAGE_SIZE}-byte page"),
            ));
        }
        Ok(bytes)
    }

    fn task(
        &mut self,
        index: usize,
        st: &Spanned<RawTask>,
        done: &[Task],
    ) -> Result<Task, SystemError> {
        let t = st.get_ref();
        let name = self.name(&t.name, "task name", "")?;
        let line = self.line(t.name.span());
        if let Some(&(_, first)) = self.task_names.get(&name) {
            return Err(self.err(
                t.name.span(),
                format!("duplicate task name \"{name}\" (first defined on line {first})"),
            ));
        }
        self.task_names.insert(name.clone(), (index, line));

        let server = t.server.get_ref();
        if !self.known_servers.contains(&server.as_str()) {
            return Err(self.err(
                t.server.span(),
                format!(
                    "task \"{name}\" runs unknown server \"{server}\" (known: {})",
                    self.known_servers.join(", ")
                ),
            ));
        }

        let priority = *t.priority.get_ref();
        let priority = match u8::try_from(priority) {
            Ok(p) if p <= MAX_PRIORITY => p,
            _ => {
                return Err(self.err(
                    t.priority.span(),
                    format!(
                        "priority {priority} of task \"{name}\" is out of range \
                         (0 = highest .. {MAX_PRIORITY} = lowest)"
                    ),
                ));
            }
        };
        let supervisor = t.supervisor.as_ref().is_some_and(|s| *s.get_ref());
        if supervisor {
            let flag = t.supervisor.as_ref().map_or(st.span(), |s| s.span());
            if let Some(first) = done.iter().find(|d| d.supervisor) {
                return Err(self.err(
                    flag,
                    format!(
                        "tasks \"{}\" and \"{name}\" are both marked supervisor; there must be \
                         exactly one",
                        first.name
                    ),
                ));
            }
            if index != 0 {
                return Err(self.err(
                    flag,
                    format!("the supervisor \"{name}\" must be the first task (task 0)"),
                ));
            }
            if priority != 0 {
                return Err(self.err(
                    t.priority.span(),
                    format!(
                        "the supervisor \"{name}\" has priority {priority}; it must have the \
                         highest, 0"
                    ),
                ));
            }
        } else if priority == 0 {
            return Err(self.err(
                t.priority.span(),
                format!("task \"{name}\" has priority 0, which belongs to the supervisor alone"),
            ));
        }

        let stack = self.size(
            &t.stack,
            &format!("stack of task \"{name}\""),
            MIN_STACK,
            MAX_STACK,
        )?;
        let heap = self.size(&t.heap, &format!("heap of task \"{name}\""), 0, MAX_HEAP)?;
        let dma = match &t.dma {
            Some(d) => self.size(d, &format!("DMA budget of task \"{name}\""), 0, MAX_DMA)?,
            None => 0,
        };

        self.bits.push(self.notifications(&name, t)?);

        let fault_bit = match (&t.fault, supervisor) {
            (Some(f), true) => Some(self.post(index, &name, f, "fault notifications".into())?),
            (Some(f), false) => {
                return Err(self.err(
                    f.span(),
                    format!(
                        "task \"{name}\" is not the supervisor; only the supervisor receives \
                         fault notifications"
                    ),
                ));
            }
            (None, true) => {
                return Err(self.err(
                    st.span(),
                    format!(
                        "the supervisor \"{name}\" needs a fault notification \
                         (fault = \"<notification name>\")"
                    ),
                ));
            }
            (None, false) => None,
        };
        let timer_bit = match &t.timer {
            Some(tm) => Some(self.post(index, &name, tm, "the timer".into())?),
            None => None,
        };

        let mut devices = Vec::with_capacity(t.device.len());
        for (i, d) in t.device.iter().enumerate() {
            if supervisor {
                return Err(self.err(
                    d.span(),
                    format!("the supervisor \"{name}\" may not claim devices"),
                ));
            }
            if i == MAX_DEVICES_PER_TASK {
                return Err(self.err(
                    d.span(),
                    format!(
                        "task \"{name}\" claims too many devices: at most {MAX_DEVICES_PER_TASK}"
                    ),
                ));
            }
            devices.push(self.device(index, &name, d.get_ref(), &devices)?);
        }

        let xen = match &t.xen {
            None => None,
            Some(x) if supervisor => {
                return Err(self.err(
                    x.span(),
                    format!("the supervisor \"{name}\" may not hold Xen rights"),
                ));
            }
            Some(x) => {
                let x = x.get_ref();
                let event_bit = self.post(index, &name, &x.event, "Xen events".into())?;
                let grant_window = self.size(
                    &x.grant_window,
                    &format!("Xen grant window of task \"{name}\""),
                    0,
                    MAX_GRANT_WINDOW,
                )?;
                Some(XenRights {
                    event_bit,
                    grant_window,
                })
            }
        };

        let mut notifications: Vec<Notification> = self.bits[index]
            .iter()
            .map(|b| Notification {
                name: b.name.clone(),
                bit: b.bit,
            })
            .collect();
        notifications.sort_by_key(|n| n.bit);
        Ok(Task {
            name,
            server: server.clone(),
            priority,
            supervisor,
            stack,
            heap,
            dma,
            notifications,
            fault_bit,
            timer_bit,
            devices,
            xen,
        })
    }

    /// The task's named bits, in file order, with names and bit numbers checked.
    fn notifications(&self, task: &str, t: &RawTask) -> Result<Vec<Bit>, SystemError> {
        let mut entries: Vec<(&String, &Spanned<i64>)> = t.notifications.iter().collect();
        entries.sort_by_key(|(_, bit)| bit.span().start);
        let mut bits: Vec<Bit> = Vec::with_capacity(entries.len());
        for (name, bit) in entries {
            let span = bit.span();
            let name = self.name_at(
                name,
                span.clone(),
                "notification name",
                &format!(" of task \"{task}\""),
            )?;
            let n = *bit.get_ref();
            let bit = match u8::try_from(n) {
                Ok(b) if b < NOTIFICATION_BITS => b,
                _ => {
                    return Err(self.err(
                        span,
                        format!(
                            "notification \"{name}\" of task \"{task}\" uses bit {n}; bits are \
                             0..{}",
                            NOTIFICATION_BITS - 1
                        ),
                    ));
                }
            };
            if let Some(other) = bits.iter().find(|b| b.bit == bit) {
                return Err(self.err(
                    span,
                    format!(
                        "task \"{task}\" gives bit {bit} to both \"{}\" and \"{name}\"; one bit \
                         can have only one source",
                        other.name
                    ),
                ));
            }
            bits.push(Bit {
                name,
                bit,
                span,
                source: None,
            });
        }
        Ok(bits)
    }

    /// Records that `what` posts the notification `name` of task `index`; returns its bit.
    fn post(
        &mut self,
        index: usize,
        task: &str,
        name: &Spanned<String>,
        what: String,
    ) -> Result<u8, SystemError> {
        let line = self.line(name.span());
        let Some(bit) = self.bits[index]
            .iter()
            .position(|b| b.name == *name.get_ref())
        else {
            return Err(self.err(
                name.span(),
                format!(
                    "task \"{task}\" has no notification \"{}\" for {what}",
                    name.get_ref()
                ),
            ));
        };
        let entry = &self.bits[index][bit];
        if let Some((first, first_line)) = &entry.source {
            return Err(self.err(
                name.span(),
                format!(
                    "notification \"{}\" of task \"{task}\" has two sources: {first} (line \
                     {first_line}) and {what}",
                    entry.name
                ),
            ));
        }
        let number = entry.bit;
        self.bits[index][bit].source = Some((what, line));
        Ok(number)
    }

    fn device(
        &mut self,
        index: usize,
        task: &str,
        d: &RawDevice,
        done: &[Device],
    ) -> Result<Device, SystemError> {
        let name = self.name(&d.name, "device name", &format!(" of task \"{task}\""))?;
        if done.iter().any(|o| o.name == name) {
            return Err(self.err(
                d.name.span(),
                format!("task \"{task}\" has two devices named \"{name}\""),
            ));
        }
        let owner = format!("device \"{name}\" of task \"{task}\"");
        let claim = match (&d.pci, &d.bdf) {
            (Some(_), Some(b)) => {
                return Err(self.err(
                    b.span(),
                    format!("{owner} has both pci and bdf; claim by one of them"),
                ));
            }
            (None, None) => {
                return Err(self.err(
                    d.name.span(),
                    format!("{owner} claims nothing: give pci = [\"vendor:device\", ...] or bdf = \"...\""),
                ));
            }
            (Some(list), None) => {
                let ids = list.get_ref();
                if ids.is_empty() || ids.len() > MAX_PCI_IDS_PER_DEVICE {
                    return Err(self.err(
                        list.span(),
                        format!(
                            "{owner} lists {} PCI ids; it must list 1 to {MAX_PCI_IDS_PER_DEVICE}",
                            ids.len()
                        ),
                    ));
                }
                let mut out = Vec::with_capacity(ids.len());
                for s in ids {
                    let Some(id) = parse_pci_id(s.get_ref()) else {
                        return Err(self.err(
                            s.span(),
                            format!(
                                "bad PCI id \"{}\" in {owner}: expected vendor:device in hex, \
                                 like \"8086:10fb\"",
                                s.get_ref()
                            ),
                        ));
                    };
                    self.claim(
                        ClaimKey::Id(id),
                        format!("PCI id {:04x}:{:04x}", id.vendor, id.device),
                        &owner,
                        s.span(),
                    )?;
                    out.push(id);
                }
                Claim::Ids(out)
            }
            (None, Some(b)) => {
                let Some(bdf) = parse_bdf(b.get_ref()) else {
                    return Err(self.err(
                        b.span(),
                        format!(
                            "bad BDF \"{}\" in {owner}: expected [segment:]bus:device.function in \
                             hex, like \"0000:03:00.0\"",
                            b.get_ref()
                        ),
                    ));
                };
                self.claim(
                    ClaimKey::Bdf(bdf),
                    format!(
                        "PCI function {:04x}:{:02x}:{:02x}.{}",
                        bdf.segment, bdf.bus, bdf.device, bdf.function
                    ),
                    &owner,
                    b.span(),
                )?;
                Claim::Bdf(bdf)
            }
        };

        let raw_bars = d.bars.get_ref();
        if raw_bars.is_empty() {
            return Err(self.err(
                d.bars.span(),
                format!("{owner} maps no BARs; list the BARs the driver uses"),
            ));
        }
        let mut bars: Vec<u8> = Vec::with_capacity(raw_bars.len());
        for b in raw_bars {
            let n = *b.get_ref();
            let bar = match u8::try_from(n) {
                Ok(bar) if bar < MAX_BARS => bar,
                _ => {
                    return Err(self.err(
                        b.span(),
                        format!(
                            "BAR {n} of {owner} is out of range: a PCI function has BARs 0..{}",
                            MAX_BARS - 1
                        ),
                    ));
                }
            };
            if bars.contains(&bar) {
                return Err(self.err(b.span(), format!("BAR {bar} of {owner} is listed twice")));
            }
            bars.push(bar);
        }
        bars.sort_unstable();

        let mut msix = Vec::new();
        if let Some(list) = &d.msix {
            let vectors = list.get_ref();
            if vectors.len() > MAX_MSIX_PER_DEVICE {
                return Err(self.err(
                    list.span(),
                    format!(
                        "{owner} routes {} MSI-X vectors; at most {MAX_MSIX_PER_DEVICE}",
                        vectors.len()
                    ),
                ));
            }
            if self.msix_total + vectors.len() > MAX_MSIX_TOTAL {
                return Err(self.err(
                    list.span(),
                    format!(
                        "{owner} brings the system to {} MSI-X vectors; at most {MAX_MSIX_TOTAL} \
                         in all",
                        self.msix_total + vectors.len()
                    ),
                ));
            }
            self.msix_total += vectors.len();
            for (i, v) in vectors.iter().enumerate() {
                msix.push(self.post(
                    index,
                    task,
                    v,
                    format!("MSI-X vector {i} of device \"{name}\""),
                )?);
            }
        }
        Ok(Device {
            name,
            claim,
            bars,
            msix,
        })
    }

    /// Records that `owner` claims `key`; a second claim of the same thing is an error.
    fn claim(
        &mut self,
        key: ClaimKey,
        what: String,
        owner: &str,
        span: Range<usize>,
    ) -> Result<(), SystemError> {
        if let Some((first, line)) = self.claims.get(&key) {
            if first == owner {
                return Err(self.err(span, format!("{what} is listed twice by {owner}")));
            }
            return Err(self.err(
                span,
                format!("{what} is claimed twice: by {first} (line {line}) and by {owner}"),
            ));
        }
        let line = self.line(span);
        self.claims.insert(key, (owner.to_string(), line));
        Ok(())
    }

    fn channel(
        &mut self,
        sc: &Spanned<RawChannel>,
        tasks: &[Task],
        lines: &mut HashMap<String, usize>,
    ) -> Result<Channel, SystemError> {
        let c = sc.get_ref();
        let name = self.name(&c.name, "channel name", "")?;
        if let Some(first) = lines.get(&name) {
            return Err(self.err(
                c.name.span(),
                format!("duplicate channel name \"{name}\" (first defined on line {first})"),
            ));
        }
        lines.insert(name.clone(), self.line(c.name.span()));
        let size = self.size(
            &c.size,
            &format!("size of channel \"{name}\""),
            PAGE_SIZE,
            MAX_CHANNEL_SIZE,
        )?;
        let raw_ends = c.ends.get_ref();
        if raw_ends.len() != 2 {
            return Err(self.err(
                c.ends.span(),
                format!(
                    "channel \"{name}\" has {} end{}; a channel joins exactly two tasks",
                    raw_ends.len(),
                    if raw_ends.len() == 1 { "" } else { "s" }
                ),
            ));
        }
        let mut ends = [ChannelEnd {
            task: 0,
            kick_bit: 0,
        }; 2];
        for (i, e) in raw_ends.iter().enumerate() {
            let e = e.get_ref();
            let task_name = e.task.get_ref();
            let Some(&(task, _)) = self.task_names.get(task_name) else {
                return Err(self.err(
                    e.task.span(),
                    format!("channel \"{name}\" names unknown task \"{task_name}\""),
                ));
            };
            if i == 1 && task == ends[0].task {
                return Err(self.err(
                    e.task.span(),
                    format!(
                        "channel \"{name}\" joins task \"{task_name}\" to itself; its ends must be \
                         two different tasks"
                    ),
                ));
            }
            let kick_bit = self.post(
                task,
                &tasks[task].name,
                &e.kick,
                format!("kicks on channel \"{name}\""),
            )?;
            ends[i] = ChannelEnd { task, kick_bit };
        }
        Ok(Channel { name, size, ends })
    }
}

/// `vvvv:dddd`, four hex digits each.
fn parse_pci_id(s: &str) -> Option<PciId> {
    let (vendor, device) = s.split_once(':')?;
    Some(PciId {
        vendor: hex_field(vendor, 4, 4)?,
        device: hex_field(device, 4, 4)?,
    })
}

/// `[ssss:]bb:dd.f` in hex; device <= 0x1f, function <= 7.
fn parse_bdf(s: &str) -> Option<Bdf> {
    let (rest, function) = s.rsplit_once('.')?;
    let mut parts = rest.rsplit(':');
    let device = hex_field(parts.next()?, 2, 2)?;
    let bus = hex_field(parts.next()?, 2, 2)?;
    let segment = match parts.next() {
        Some(seg) => hex_field(seg, 4, 4)?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    let function = hex_field(function, 1, 1)?;
    let bdf = Bdf {
        segment,
        bus: u8::try_from(bus).ok()?,
        device: u8::try_from(device).ok()?,
        function: u8::try_from(function).ok()?,
    };
    (bdf.device <= 0x1f && bdf.function <= 7).then_some(bdf)
}

fn hex_field(s: &str, min_len: usize, max_len: usize) -> Option<u16> {
    if !(min_len..=max_len).contains(&s.len()) || !s.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_ids_and_bdfs_parse_strictly() {
        assert_eq!(
            parse_pci_id("8086:10FB"),
            Some(PciId {
                vendor: 0x8086,
                device: 0x10fb
            })
        );
        for bad in [
            "8086-10fb",
            "8086:10f",
            "8086:10fbb",
            "x086:10fb",
            "8086:10fb:1",
            "",
        ] {
            assert_eq!(parse_pci_id(bad), None, "{bad}");
        }
        let bdf = |segment, bus, device, function| Bdf {
            segment,
            bus,
            device,
            function,
        };
        assert_eq!(parse_bdf("0000:03:00.0"), Some(bdf(0, 3, 0, 0)));
        assert_eq!(parse_bdf("0001:ff:1f.7"), Some(bdf(1, 0xff, 0x1f, 7)));
        assert_eq!(parse_bdf("03:00.1"), Some(bdf(0, 3, 0, 1)));
        for bad in [
            "03:20.0",
            "03:00.8",
            "3:00.0",
            "0:03:00.0",
            "1:0000:03:00.0",
            "03:00",
            "03.00.0",
        ] {
            assert_eq!(parse_bdf(bad), None, "{bad}");
        }
    }
}
