//! `xspack completions` and `xspack man`: shell completions (`clap_complete`) and one roff man
//! page per command (`clap_mangen`), both generated from the clap definitions in [`crate::cli`],
//! so they never drift from `--help`.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use camino::Utf8PathBuf;
use clap::{Args, CommandFactory as _};
use clap_complete::Shell;
use xspack_io::{AtomicDir, AtomicFile};

use crate::cli::Cli;
use crate::ui::Ui;

/// Arguments of `xspack completions`.
#[derive(Debug, Args)]
#[command(after_help = "Install: xspack completions bash > \
    /usr/share/bash-completion/completions/xspack (zsh: site-functions/_xspack; fish: \
    vendor_completions.d/xspack.fish). `just install` does this under a prefix.")]
pub struct CompletionsArgs {
    /// Shell to print the completion script for
    #[arg(value_name = "SHELL")]
    pub shell: Shell,
}

/// Arguments of `xspack man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write one page per command into (xspack.1, xspack-pack-build.1, ...);
    /// made if missing, and other files in it are left alone
    #[arg(short, long, value_name = "DIR")]
    pub output: Utf8PathBuf,
    /// Replace xspack's own pages if they exist
    #[arg(long)]
    pub force: bool,
}

/// Prints the completion script for `args.shell` on stdout (with `--json`, in the result's
/// `script` field).
pub fn completions(args: &CompletionsArgs, ui: &Ui) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "xspack", &mut script);
    if ui.json {
        let script = String::from_utf8(script).context("the completion script is not UTF-8")?;
        ui.result(serde_json::json!({ "shell": args.shell.to_string(), "script": script }));
        return Ok(ExitCode::SUCCESS);
    }
    std::io::stdout().lock().write_all(&script).context("writing the completion script")?;
    Ok(ExitCode::SUCCESS)
}

/// The man pages of the command line, dated `source_date_epoch`: file name and roff text,
/// parents before children. The built-in `help` subcommand has no page.
pub fn man_pages(source_date_epoch: u64) -> Result<Vec<(String, Vec<u8>)>> {
    fn walk(cmd: clap::Command, date: &str, pages: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
        let subs: Vec<clap::Command> =
            cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned().collect();
        let man = clap_mangen::Man::new(cmd)
            .date(date)
            .source(format!("xspack {}", env!("CARGO_PKG_VERSION")))
            .manual("xspack manual");
        let mut text = Vec::new();
        man.render(&mut text).context("rendering a man page")?;
        pages.push((man.get_filename(), text));
        for sub in subs {
            walk(sub, date, pages)?;
        }
        Ok(())
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let epoch = i64::try_from(source_date_epoch).unwrap_or(i64::MAX);
    let date = xspack_io::civil::civil_from_unix(epoch).date_string();
    let mut pages = Vec::new();
    walk(cmd, &date, &mut pages)?;
    Ok(pages)
}

/// Writes every man page into `args.output`, dated `source_date_epoch`. A new directory
/// appears whole (with the parents it needed) or not at all. Into an existing one, such as
/// `/usr/local/share/man/man1`, each page is written atomically beside the files already
/// there, which are never touched: an existing page of the same name is an error, or with
/// `--force` is replaced.
pub fn man(args: &ManArgs, ui: &Ui, source_date_epoch: u64) -> Result<ExitCode> {
    let pages = man_pages(source_date_epoch)?;
    let dest = if args.output.is_dir() {
        if !args.force
            && let Some((name, _)) = pages.iter().find(|(n, _)| args.output.join(n).exists())
        {
            return Err(xspack_io::Error::Exists { path: args.output.join(name) }.into());
        }
        for (name, text) in &pages {
            let path = args.output.join(name);
            let mut page = if args.force {
                AtomicFile::create_or_replace(&path)?
            } else {
                AtomicFile::create(&path)?
            };
            page.write_all(text).with_context(|| format!("{path}: writing"))?;
            page.commit()?;
        }
        args.output.clone()
    } else {
        let dir = AtomicDir::create_with_parents(&args.output, false)?;
        for (name, text) in &pages {
            let path = dir.path().join(name);
            std::fs::write(&path, text)
                .with_context(|| format!("{}: writing", args.output.join(name)))?;
        }
        dir.commit()?
    };
    if ui.json {
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        let artifacts: Vec<_> =
            pages.iter().map(|(n, text)| crate::outputs::artifact(n, text)).collect();
        ui.result(
            serde_json::json!({ "output_dir": dest, "artifacts": artifacts, "pages": names }),
        );
    } else {
        ui.say(&format!("{dest}: {} man pages", pages.len()));
    }
    Ok(ExitCode::SUCCESS)
}
