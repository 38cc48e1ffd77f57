//! From parsed TOML to a [`Catalog`]: converts human units and cross-checks
//! references, reporting every problem at the line and column of the value at fault.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use hearth_sdk::SplitMode;
use toml::Spanned;

use super::schema::{
    RawArtifact, RawCatalog, RawIdle, RawIsolation, RawMemoryKind, RawModel, RawPlacement,
    RawTierTable,
};
use super::units::{format_duration, parse_duration, parse_size};
use super::{
    AdapterEntry, Artifact, Catalog, CatalogError, IdlePolicy, IsolationPolicy, MemoryKind,
    ModelEntry, Placement, Tier,
};

/// Parses and validates; see [`Catalog::parse`].
pub(super) fn parse(text: &str, origin: &Path) -> Result<Catalog, CatalogError> {
    let raw: RawCatalog = toml::from_str(text).map_err(|e| {
        let (line, column) = line_col(text, e.span().map_or(0, |s| s.start));
        CatalogError::Syntax {
            path: origin.to_path_buf(),
            line,
            column,
            reason: e.message().trim().to_string(),
        }
    })?;
    Checker { text, origin }.catalog(raw)
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

struct Checker<'a> {
    text: &'a str,
    origin: &'a Path,
}

impl Checker<'_> {
    fn invalid(&self, span: Range<usize>, reason: impl Into<String>) -> CatalogError {
        let (line, column) = line_col(self.text, span.start);
        CatalogError::Invalid {
            path: self.origin.to_path_buf(),
            line,
            column,
            reason: reason.into(),
        }
    }

    fn catalog(&self, raw: RawCatalog) -> Result<Catalog, CatalogError> {
        let idle = self.idle(&raw.idle)?;
        let isolation = self.isolation(raw.isolation)?;
        let rpc_servers = self.rpc_servers(raw.rpc.servers)?;
        let placement = self.placement(raw.placement)?;

        let mut model_ids = HashSet::new();
        let mut models = Vec::with_capacity(raw.models.len());
        for m in raw.models {
            self.plain_id(&m.id, "model id")?;
            if !model_ids.insert(m.id.get_ref().clone()) {
                return Err(
                    self.invalid(m.id.span(), format!("duplicate model id `{}`", m.id.get_ref()))
                );
            }
            models.push(self.model(m, &idle)?);
        }

        let mut tiers = Vec::new();
        let mut backends_seen = HashSet::new();
        for table in raw.tier_tables {
            if !backends_seen.insert(table.backend.get_ref().clone()) {
                let reason = format!(
                    "a second tier table for backend `{}`; merge them into one",
                    table.backend.get_ref()
                );
                return Err(self.invalid(table.backend.span(), reason));
            }
            tiers.extend(self.tier_table(table, &model_ids)?);
        }

        let mut adapter_names = HashSet::new();
        let mut adapters = Vec::with_capacity(raw.adapters.len());
        for a in raw.adapters {
            self.plain_id(&a.name, "adapter name")?;
            if !adapter_names.insert(a.name.get_ref().clone()) {
                return Err(self.invalid(
                    a.name.span(),
                    format!("duplicate adapter name `{}`", a.name.get_ref()),
                ));
            }
            if !model_ids.contains(a.base_model.get_ref()) {
                let reason = format!(
                    "adapter `{}` names base model `{}`, which no [[models]] entry defines",
                    a.name.get_ref(),
                    a.base_model.get_ref()
                );
                return Err(self.invalid(a.base_model.span(), reason));
            }
            let artifacts =
                a.artifacts.into_iter().map(|x| self.artifact(x)).collect::<Result<_, _>>()?;
            adapters.push(AdapterEntry {
                name: a.name.into_inner(),
                title: a.title,
                base_model: a.base_model.into_inner(),
                purpose: a.purpose,
                artifacts,
            });
        }

        Ok(Catalog { idle, isolation, rpc_servers, placement, models, tiers, adapters })
    }

    fn idle(&self, raw: &RawIdle) -> Result<IdlePolicy, CatalogError> {
        let defaults = IdlePolicy::default();
        let soft = self.duration(raw.soft_timeout.as_ref())?.unwrap_or(defaults.soft_timeout);
        let hard = self.duration(raw.hard_timeout.as_ref())?.unwrap_or(defaults.hard_timeout);
        self.soft_before_hard(soft, hard, raw.soft_timeout.as_ref().or(raw.hard_timeout.as_ref()))?;
        let max_resident_models = match &raw.max_resident_models {
            Some(n) if *n.get_ref() == 0 => {
                return Err(self.invalid(n.span(), "max_resident_models must be at least 1"));
            }
            Some(n) => *n.get_ref(),
            None => defaults.max_resident_models,
        };
        let memory_budget_bytes = match &raw.memory_budget {
            Some(s) => Some(self.size(s, false)?.0),
            None => None,
        };
        Ok(IdlePolicy {
            soft_timeout: soft,
            hard_timeout: hard,
            max_resident_models,
            memory_budget_bytes,
        })
    }

    fn isolation(&self, raw: RawIsolation) -> Result<IsolationPolicy, CatalogError> {
        let stall_timeout = match self.duration(raw.stall_timeout.as_ref())? {
            Some(timeout) if timeout.is_zero() => {
                let at = raw.stall_timeout.as_ref().map_or(0..0, toml::Spanned::span);
                return Err(self.invalid(at, "stall_timeout must be longer than zero"));
            }
            Some(timeout) => timeout,
            None => IsolationPolicy::default().stall_timeout,
        };
        Ok(IsolationPolicy { default: raw.default, backends: raw.backends, stall_timeout })
    }

    /// Each server is `host:port`, listed once.
    fn rpc_servers(&self, raw: Vec<Spanned<String>>) -> Result<Vec<String>, CatalogError> {
        let mut servers: Vec<String> = Vec::with_capacity(raw.len());
        for server in raw {
            let text = server.get_ref();
            let port = text
                .rsplit_once(':')
                .filter(|(host, _)| !host.is_empty() && !host.contains(','))
                .and_then(|(_, port)| port.parse::<u16>().ok())
                .filter(|port| *port != 0);
            if port.is_none() {
                return Err(self.invalid(
                    server.span(),
                    format!(
                        "RPC server `{text}` is not host:port (as `hearth rpc-server` prints it)"
                    ),
                ));
            }
            if servers.contains(text) {
                return Err(
                    self.invalid(server.span(), format!("RPC server `{text}` is listed twice"))
                );
            }
            servers.push(server.into_inner());
        }
        Ok(servers)
    }

    /// A known split mode; a main device only where the split has one.
    fn placement(&self, raw: RawPlacement) -> Result<Placement, CatalogError> {
        let split = match &raw.split {
            None => None,
            Some(split) => Some(SplitMode::from_name(split.get_ref()).ok_or_else(|| {
                self.invalid(
                    split.span(),
                    format!("split `{}` is not one of layer, row, none", split.get_ref()),
                )
            })?),
        };
        if let Some(main) = &raw.main {
            if split.unwrap_or_default() == SplitMode::Layer {
                return Err(self.invalid(
                    main.span(),
                    "a main device needs `split = \"row\"` or `\"none\"`: split by layer, \
                     every device holds whole layers",
                ));
            }
        }
        let name = |value: Option<Spanned<String>>, what: &str| match value {
            Some(value) if value.get_ref().trim().is_empty() => {
                Err(self.invalid(value.span(), format!("{what} is empty")))
            }
            value => Ok(value.map(Spanned::into_inner)),
        };
        Ok(Placement {
            devices: name(raw.devices, "`devices`")?,
            split,
            main: name(raw.main, "`main`")?,
        })
    }

    fn model(&self, m: RawModel, idle: &IdlePolicy) -> Result<ModelEntry, CatalogError> {
        let soft_timeout = self.duration(m.soft_timeout.as_ref())?;
        let hard_timeout = self.duration(m.hard_timeout.as_ref())?;
        self.soft_before_hard(
            soft_timeout.unwrap_or(idle.soft_timeout),
            hard_timeout.unwrap_or(idle.hard_timeout),
            m.soft_timeout.as_ref().or(m.hard_timeout.as_ref()),
        )?;
        let artifacts =
            m.artifacts.into_iter().map(|a| self.artifact(a)).collect::<Result<_, _>>()?;
        Ok(ModelEntry {
            id: m.id.into_inner(),
            name: m.name,
            family: m.family,
            parameters: m.parameters,
            context_size: m.context_size,
            artifacts,
            soft_timeout,
            hard_timeout,
        })
    }

    fn tier_table(
        &self,
        table: RawTierTable,
        model_ids: &HashSet<String>,
    ) -> Result<Vec<Tier>, CatalogError> {
        let backend = table.backend.get_ref();
        if backend.trim().is_empty() {
            return Err(self.invalid(table.backend.span(), "a tier table must name its backend"));
        }
        if table.tiers.is_empty() {
            return Err(
                self.invalid(table.backend.span(), format!("tier table `{backend}` has no tiers"))
            );
        }
        let memory_kind = match table.memory_kind {
            RawMemoryKind::Ram => MemoryKind::Ram,
            RawMemoryKind::GpuMemory => MemoryKind::GpuMemory,
        };
        let mut tiers = Vec::with_capacity(table.tiers.len());
        for (index, t) in table.tiers.into_iter().enumerate() {
            // Tiers are positions in a ladder the router walks down; gaps or reordering
            // would make "the next smaller tier" ambiguous.
            let expected = index + 1;
            if usize::from(*t.tier.get_ref()) != expected {
                let reason = format!(
                    "backend `{backend}` tier {} is out of order: tiers must be numbered 1, 2, 3, … in order, expected {expected}",
                    t.tier.get_ref()
                );
                return Err(self.invalid(t.tier.span(), reason));
            }
            if t.models.get_ref().is_empty() {
                return Err(self.invalid(
                    t.models.span(),
                    format!("backend `{backend}` tier {expected} lists no models"),
                ));
            }
            for id in t.models.get_ref() {
                if !model_ids.contains(id.get_ref()) {
                    let reason = format!(
                        "backend `{backend}` tier {expected} names model `{}`, which no [[models]] entry defines",
                        id.get_ref()
                    );
                    return Err(self.invalid(id.span(), reason));
                }
            }
            let (memory_required_bytes, open_ended) = self.size(&t.memory_required, true)?;
            tiers.push(Tier {
                backend: backend.clone(),
                tier: *t.tier.get_ref(),
                models: t.models.into_inner().into_iter().map(Spanned::into_inner).collect(),
                memory_required_bytes,
                memory_kind,
                open_ended,
            });
        }
        Ok(tiers)
    }

    fn artifact(&self, a: RawArtifact) -> Result<Artifact, CatalogError> {
        if a.backends.get_ref().is_empty() {
            return Err(
                self.invalid(a.backends.span(), "an artifact must name at least one backend")
            );
        }
        if let Some(reason) = unsafe_file_name(a.file.get_ref()) {
            return Err(
                self.invalid(a.file.span(), format!("file `{}` {reason}", a.file.get_ref()))
            );
        }
        if let Some(sha) = &a.sha256 {
            if sha.get_ref().len() != 64 || !sha.get_ref().chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(self.invalid(sha.span(), "sha256 must be 64 hexadecimal digits"));
            }
        }
        if let Some(size) = &a.size_bytes {
            if *size.get_ref() == 0 {
                return Err(self.invalid(size.span(), "size_bytes must be positive"));
            }
        }
        for companion in &a.companions {
            let name = companion.get_ref();
            let reason = if name.contains('/') {
                Some("must be a plain name: companions sit beside the artifact's file")
            } else if *name == file_name(a.file.get_ref()) {
                Some("is the artifact's own file")
            } else {
                unsafe_file_name(name)
            };
            if let Some(reason) = reason {
                return Err(self.invalid(companion.span(), format!("companion `{name}` {reason}")));
            }
        }
        Ok(Artifact {
            backends: a.backends.into_inner(),
            format: a.format,
            file: a.file.into_inner(),
            url: a.url,
            sha256: a.sha256.map(|s| s.into_inner().to_ascii_lowercase()),
            size_bytes: a.size_bytes.map(Spanned::into_inner),
            quantization: a.quantization,
            companions: a.companions.into_iter().map(Spanned::into_inner).collect(),
        })
    }

    /// Ids end up in file paths and URLs, so they stay plain.
    fn plain_id(&self, id: &Spanned<String>, what: &str) -> Result<(), CatalogError> {
        let s = id.get_ref();
        let ok = !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if ok {
            Ok(())
        } else {
            Err(self.invalid(
                id.span(),
                format!("{what} `{s}` may only use letters, digits, `.`, `-` and `_`"),
            ))
        }
    }

    fn duration(&self, raw: Option<&Spanned<String>>) -> Result<Option<Duration>, CatalogError> {
        raw.map(|s| parse_duration(s.get_ref()).map_err(|reason| self.invalid(s.span(), reason)))
            .transpose()
    }

    fn soft_before_hard(
        &self,
        soft: Duration,
        hard: Duration,
        at: Option<&Spanned<String>>,
    ) -> Result<(), CatalogError> {
        match at {
            Some(at) if soft > hard => Err(self.invalid(
                at.span(),
                format!(
                    "soft_timeout ({}) is longer than hard_timeout ({}); a model is trimmed before it is unloaded",
                    format_duration(soft),
                    format_duration(hard)
                ),
            )),
            _ => Ok(()),
        }
    }

    fn size(
        &self,
        raw: &Spanned<String>,
        open_ended_allowed: bool,
    ) -> Result<(u64, bool), CatalogError> {
        let size = parse_size(raw.get_ref()).map_err(|reason| self.invalid(raw.span(), reason))?;
        if size.open_ended && !open_ended_allowed {
            return Err(self.invalid(
                raw.span(),
                format!("`{}`: an open-ended size (`+`) only fits a tier", raw.get_ref()),
            ));
        }
        Ok((size.bytes, size.open_ended))
    }
}

/// The last part of a relative file path.
fn file_name(file: &str) -> &str {
    file.rsplit('/').next().unwrap_or(file)
}

/// Why `file` could escape the models folder, or `None` when it is a plain relative
/// name. Sub-folders are allowed (split GGUF files live in one); `..`, absolute paths,
/// backslashes and drive letters are not.
fn unsafe_file_name(file: &str) -> Option<&'static str> {
    if file.is_empty() {
        Some("is empty")
    } else if file.starts_with('/') {
        Some("is an absolute path; use a name relative to the models folder")
    } else if file.contains('\\') || file.contains(':') {
        Some("may not contain `\\` or `:`; use `/` between folders")
    } else if file.split('/').any(|part| part == "..") {
        Some("climbs out of the models folder with `..`")
    } else if file.split('/').any(|part| part.is_empty() || part == ".") {
        Some("has an empty or `.` path component")
    } else {
        None
    }
}
