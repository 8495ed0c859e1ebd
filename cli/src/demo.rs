//! `nextword demo`: type in a terminal and watch the suggestion strip follow each keystroke.
//! Without a terminal (pipes, CI) it replays each input line key by key and prints the strip
//! after every key, which is also how the demo is tested.

use std::io::{self, BufRead, IsTerminal, Write};
use std::time::Instant;

use anyhow::Result;
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::{cursor, terminal, QueueableCommand};
use nextword_core::{Predictor, Suggestion};

pub fn run(p: &Predictor) -> Result<()> {
    if io::stdin().is_terminal() && io::stdout().is_terminal() {
        interactive(p)
    } else {
        replay(p)
    }
}

fn strip(suggestions: &[Suggestion]) -> String {
    let words: Vec<&str> = suggestions.iter().map(|s| s.text.as_str()).collect();
    format!("[ {} ]", words.join(" | "))
}

fn replay(p: &Predictor) -> Result<()> {
    let mut out = io::stdout().lock();
    for line in io::stdin().lock().lines() {
        let line = line?;
        for (i, c) in line.char_indices() {
            let typed = &line[..i + c.len_utf8()];
            let t = Instant::now();
            let s = p.suggest(typed, 3)?;
            writeln!(
                out,
                "{typed:<50} {}  {:.1} ms",
                strip(&s),
                t.elapsed().as_secs_f64() * 1e3
            )?;
        }
    }
    Ok(())
}

fn interactive(p: &Predictor) -> Result<()> {
    terminal::enable_raw_mode()?;
    let result = interactive_loop(p);
    terminal::disable_raw_mode()?;
    println!();
    result
}

/// Tab or 1/2/3 with Alt takes a suggestion; Esc or Ctrl-C quits.
fn interactive_loop(p: &Predictor) -> Result<()> {
    let mut out = io::stdout();
    let mut text = String::new();
    let mut suggestions = p.suggest("", 3)?;
    let mut latency = 0.0;
    loop {
        out.queue(cursor::MoveToColumn(0))?
            .queue(terminal::Clear(terminal::ClearType::CurrentLine))?;
        write!(out, "{}  {:.1} ms  > {text}", strip(&suggestions), latency)?;
        out.flush()?;
        let Event::Key(k) = event::read()? else {
            continue;
        };
        if k.kind != KeyEventKind::Press {
            continue;
        }
        let pick = match k.code {
            KeyCode::Esc => return Ok(()),
            KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => return Ok(()),
            KeyCode::Tab => Some(0),
            KeyCode::Char(d @ '1'..='3') if k.modifiers.contains(KeyModifiers::ALT) => {
                Some(d as usize - '1' as usize)
            }
            KeyCode::Char(c) => {
                text.push(c);
                None
            }
            KeyCode::Backspace => {
                text.pop();
                None
            }
            KeyCode::Enter => {
                text.push(' ');
                None
            }
            _ => continue,
        };
        if let Some(s) = pick.and_then(|i| suggestions.get(i)) {
            let keep = text.trim_end_matches(nextword_core::is_word_char).len();
            text.truncate(keep);
            text.push_str(&s.text);
            text.push(' ');
        }
        let t = Instant::now();
        suggestions = p.suggest(&text, 3)?;
        latency = t.elapsed().as_secs_f64() * 1e3;
    }
}
