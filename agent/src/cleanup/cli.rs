//! `sobre-agent cleanup` at a terminal: the review, the question, the
//! moves, and `--undo`.

use super::{Keep, Outcome, Selection, apply, last_scan, review, undo};
use crate::config::AgentConfig;
use crate::scan::human;
use crate::scan::rules::Category;
use anyhow::Context;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

/// `sobre-agent cleanup`'s options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CleanupArgs {
    /// Move duplicates to the trash, keeping the oldest or the newest copy
    /// of each group.
    #[arg(long, value_enum)]
    pub duplicates: Option<Keep>,
    /// Move entries of a category to the trash: temp, empty_files,
    /// empty_dirs, broken_links, old_downloads, cold, large. Repeatable.
    #[arg(long = "category", value_name = "CATEGORY")]
    pub categories: Vec<String>,
    /// Only entries under this folder. Repeatable.
    #[arg(long, value_name = "FOLDER")]
    pub under: Vec<PathBuf>,
    /// List what would be moved; move nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask before moving.
    #[arg(long)]
    pub yes: bool,
    /// Put back everything the last clean-up moved.
    #[arg(long, conflicts_with_all = ["duplicates", "categories", "dry_run"])]
    pub undo: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
    /// Index directory of the scan to review (as for `scan`).
    #[arg(long)]
    pub index_dir: Option<PathBuf>,
    /// Trash folder (default: $XDG_DATA_HOME/Trash, ~/.local/share/Trash).
    #[arg(long)]
    pub trash_dir: Option<PathBuf>,
}

fn selection(args: &CleanupArgs) -> anyhow::Result<Selection> {
    let mut categories = Vec::new();
    for name in &args.categories {
        match Category::parse(name) {
            Some(Category::Duplicates) => {
                anyhow::bail!("use --duplicates keep-oldest|keep-newest for duplicates")
            }
            Some(Category::Trash) => {
                anyhow::bail!("files in the trash are already there: empty it from your desktop")
            }
            Some(c) => categories.push(c),
            None => anyhow::bail!(
                "unknown category {name:?}: temp, empty_files, empty_dirs, broken_links, old_downloads, cold, large"
            ),
        }
    }
    let under = args
        .under
        .iter()
        .map(|u| std::path::absolute(u).unwrap_or_else(|_| u.clone()))
        .collect();
    Ok(Selection {
        duplicates: args.duplicates,
        categories,
        under,
    })
}

fn print_outcome(o: &Outcome) {
    let verb = if o.dry_run { "Would move" } else { "Moved" };
    for c in &o.moved {
        println!(
            "  {:>9}  {:<13} {}",
            human::bytes(c.size),
            c.category,
            c.path.display()
        );
    }
    println!(
        "{verb} {} entries ({}) to the trash.",
        human::count(o.moved.len() as u64),
        human::bytes(o.moved_bytes)
    );
    if !o.skipped.is_empty() {
        println!("Left in place ({}):", human::count(o.skipped.len() as u64));
        for (c, why) in &o.skipped {
            println!("  {}: {why}", c.path.display());
        }
    }
    if !o.dry_run && !o.moved.is_empty() {
        println!("Undo with: sobre-agent cleanup --undo");
    }
}

/// Runs `sobre-agent cleanup`.
pub fn run(cfg: &AgentConfig, args: CleanupArgs, config_given: bool) -> anyhow::Result<()> {
    let dir = crate::scan::cli::index_dir(cfg, args.index_dir.clone(), config_given);
    if args.undo {
        let done = undo(&dir)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&done)?);
        } else if done.restored.is_empty() && done.failed.is_empty() {
            println!("Nothing to undo.");
        } else {
            println!(
                "Put back {} entries.",
                human::count(done.restored.len() as u64)
            );
            for f in &done.failed {
                println!("  not restored: {f}");
            }
        }
        return Ok(());
    }
    let idx = last_scan(&dir)?;
    let sel = selection(&args)?;
    if sel.is_empty() {
        let all = Selection {
            duplicates: Some(Keep::Oldest),
            categories: Category::ALL
                .into_iter()
                .filter(|c| !matches!(c, Category::Duplicates | Category::Trash))
                .collect(),
            under: sel.under.clone(),
        };
        let list = review(&idx, &all);
        println!("What the last scan found (nothing is moved without a choice):");
        for c in Category::ALL {
            let items: Vec<_> = list.iter().filter(|x| x.category == c.name()).collect();
            if !items.is_empty() {
                let bytes: u64 = items.iter().map(|x| x.size).sum();
                println!(
                    "  {:<14} {:>9} in {} entries",
                    c.name(),
                    human::bytes(bytes),
                    human::count(items.len() as u64)
                );
            }
        }
        println!(
            "Choose with --duplicates keep-oldest and/or --category NAME, try with --dry-run."
        );
        return Ok(());
    }
    let list = review(&idx, &sel);
    let trash = match &args.trash_dir {
        Some(d) => super::Trash::at(d.clone()),
        None => {
            super::Trash::for_user().context("no home folder for the trash: give --trash-dir")?
        }
    };
    if !args.dry_run && !args.yes {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            anyhow::bail!(
                "{} entries selected: add --yes to move them to the trash, or --dry-run to list them",
                list.len()
            );
        }
        print_outcome(&apply(list.clone(), &trash, &dir, true)?);
        print!("Move them to the trash? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer)?;
        if !answer.trim().eq_ignore_ascii_case("y") {
            println!("Nothing moved.");
            return Ok(());
        }
    }
    let outcome = apply(list, &trash, &dir, args.dry_run)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        print_outcome(&outcome);
    }
    Ok(())
}
