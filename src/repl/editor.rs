//! The line editor: rustyline on its own thread (or plain stdin lines when stdin is not a
//! terminal). The host thread asks for a line, the editor thread reads it and sends it back;
//! completion requests travel the other way while a line is being edited, and are answered by
//! the host, which alone touches the Lua VM.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{
    Cmd, CompletionType, ConditionalEventHandler, Config, Context, Event, EventContext, EventHandler, ExternalPrinter,
    Helper, KeyEvent, RepeatCount,
};
use tokio::sync::mpsc;

use crate::stdout::StdoutError;

/// How long the completer waits for the host; a host busy in a long synchronous Lua call
/// yields no candidates rather than a frozen line.
const COMPLETION_WAIT: Duration = Duration::from_secs(2);

/// `(line, pos)` → `(start, candidates)`, computed on the host thread.
pub type CompleteFn<'a> = dyn Fn(&str, usize) -> (usize, Vec<String>) + 'a;

/// What the host asks of the editor thread.
enum Request {
    /// Read one line, showing `prompt` (on a terminal).
    Read(String),
    /// Record a finished block (a multi-line chunk is one entry) in the history file.
    History(String),
}

/// What the person typed.
#[derive(Debug, PartialEq)]
pub enum Input {
    Line(String),
    /// Ctrl-C; `empty` when the line being edited was empty.
    Interrupted {
        empty: bool,
    },
    /// Ctrl-D, or the end of piped input.
    Eof,
}

/// What the editor thread sends the host.
pub enum Message {
    Input(Input),
    /// Candidates for the word before `pos`: the host replies `(start, candidates)`.
    Complete {
        line: String,
        pos: usize,
        reply: std_mpsc::Sender<(usize, Vec<String>)>,
    },
}

/// The host's end of the editor thread.
pub struct Editor {
    /// `None` once the session is over.
    requests: Option<std_mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
    messages: mpsc::UnboundedReceiver<Message>,
    /// Whether rustyline drives a terminal (else lines come from piped stdin).
    pub interactive: bool,
    /// A read was asked for and not answered yet (its caller stopped waiting, e.g. on a
    /// signal): the next read takes that answer instead of asking for a second line.
    pending: bool,
}

/// Where results and notes go: above the prompt through rustyline on a terminal, else plain
/// stdout and stderr.
pub struct Printer {
    external: Option<std::sync::Mutex<Box<dyn ExternalPrinter + Send>>>,
    /// Why plain stdout stopped taking output, once it has.
    stdout: std::cell::RefCell<Option<StdoutError>>,
}

impl Printer {
    /// A result or a value: stdout. Once stdout is gone (the reader left, or a write failed)
    /// results are dropped; the session sees it in [`Printer::stdout_gone`] and ends.
    pub fn out(&self, text: &str) {
        match &self.external {
            Some(p) => Self::external(p, text),
            None => {
                if self.stdout_gone() {
                    return;
                }
                if let Err(e) = crate::stdout::println(text) {
                    *self.stdout.borrow_mut() = Some(e);
                }
            }
        }
    }

    /// Whether stdout took no more output: its reader left or a write failed.
    pub fn stdout_gone(&self) -> bool {
        self.stdout.borrow().is_some()
    }

    /// The write error that lost results, if any (a reader that left is not one).
    pub fn stdout_lost(&self) -> Option<std::io::Error> {
        match self.stdout.borrow_mut().take() {
            Some(StdoutError::Failed(e)) => Some(e),
            _ => None,
        }
    }

    /// A note, a progress line or an error: stderr when piped (where a failed write has
    /// nowhere to be reported, so it is dropped).
    pub fn err(&self, text: &str) {
        match &self.external {
            Some(p) => Self::external(p, text),
            None => {
                let _ = writeln!(std::io::stderr(), "{text}");
            }
        }
    }

    fn external(printer: &std::sync::Mutex<Box<dyn ExternalPrinter + Send>>, text: &str) {
        let mut message = text.replace('\n', "\r\n");
        message.push_str("\r\n");
        if let Ok(mut p) = printer.lock() {
            let _ = p.print(message);
        }
    }
}

/// Starts the editor thread. `history` is the history file (used only on a terminal).
pub fn start(history: Option<PathBuf>) -> (Editor, Printer) {
    let (requests, request_rx) = std_mpsc::channel();
    let (message_tx, messages) = mpsc::unbounded_channel();
    let interactive = std::io::stdin().is_terminal();
    let (printer_tx, printer_rx) = std_mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("swarm-repl-editor".into())
        .spawn(move || {
            if interactive {
                terminal_loop(request_rx, message_tx, history, printer_tx)
            } else {
                let _ = printer_tx.send(None);
                piped_loop(request_rx, message_tx)
            }
        })
        .expect("the editor thread starts");
    let external = printer_rx.recv().ok().flatten().map(std::sync::Mutex::new);
    (
        Editor { requests: Some(requests), thread: Some(thread), messages, interactive, pending: false },
        Printer { external, stdout: std::cell::RefCell::new(None) },
    )
}

impl Editor {
    /// Reads one line; completion requests that arrive meanwhile are answered with `complete`.
    pub async fn read(&mut self, prompt: &str, complete: &CompleteFn<'_>) -> Input {
        if !self.pending {
            let sent = self.requests.as_ref().map(|r| r.send(Request::Read(prompt.to_string())));
            if !matches!(sent, Some(Ok(()))) {
                return Input::Eof;
            }
            self.pending = true;
        }
        loop {
            match self.messages.recv().await {
                Some(Message::Input(input)) => {
                    self.pending = false;
                    return input;
                }
                Some(Message::Complete { line, pos, reply }) => {
                    let _ = reply.send(complete(&line, pos));
                }
                None => return Input::Eof,
            }
        }
    }

    /// Adds a finished block to the history.
    pub fn remember(&self, block: &str) {
        if let Some(requests) = &self.requests {
            let _ = requests.send(Request::History(block.to_string()));
        }
    }

    /// Ends the editor thread once it has saved the history it was given (unless it is still
    /// blocked reading a line nobody waits for, which the process exit ends instead).
    pub fn finish(&mut self) {
        self.requests = None;
        if !self.pending
            && let Some(thread) = self.thread.take()
        {
            let _ = thread.join();
        }
    }
}

fn piped_loop(requests: std_mpsc::Receiver<Request>, messages: mpsc::UnboundedSender<Message>) {
    let stdin = std::io::stdin();
    for request in requests {
        let Request::Read(_) = request else { continue };
        let mut line = String::new();
        let input = match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => Input::Eof,
            Ok(_) => Input::Line(line.trim_end_matches(['\n', '\r']).to_string()),
        };
        if messages.send(Message::Input(input)).is_err() {
            return;
        }
    }
}

fn terminal_loop(
    requests: std_mpsc::Receiver<Request>,
    messages: mpsc::UnboundedSender<Message>,
    history: Option<PathBuf>,
    printer: std_mpsc::Sender<Option<Box<dyn ExternalPrinter + Send>>>,
) {
    let config = Config::builder().auto_add_history(false).completion_type(CompletionType::List).build();
    let mut editor = match rustyline::Editor::<ReplHelper, DefaultHistory>::with_config(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("swarm repl: cannot start the line editor ({e}); reading plain lines");
            let _ = printer.send(None);
            return piped_loop(requests, messages);
        }
    };
    editor.set_helper(Some(ReplHelper { messages: messages.clone() }));
    let empty_line = Arc::new(AtomicBool::new(true));
    editor.bind_sequence(
        KeyEvent::ctrl('C'),
        EventHandler::Conditional(Box::new(InterruptHandler { empty_line: empty_line.clone() })),
    );
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    let external = editor.create_external_printer().ok().map(|p| Box::new(p) as Box<dyn ExternalPrinter + Send>);
    let _ = printer.send(external);
    for request in requests {
        match request {
            Request::Read(prompt) => {
                empty_line.store(true, Ordering::SeqCst);
                let input = match editor.readline(&prompt) {
                    Ok(line) => Input::Line(line),
                    Err(ReadlineError::Interrupted) => Input::Interrupted { empty: empty_line.load(Ordering::SeqCst) },
                    Err(_) => Input::Eof,
                };
                if messages.send(Message::Input(input)).is_err() {
                    return;
                }
            }
            Request::History(block) => {
                if editor.add_history_entry(block.as_str()).unwrap_or(false)
                    && let Some(path) = &history
                {
                    if let Some(dir) = path.parent() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                    if let Err(e) = editor.append_history(path) {
                        eprintln!("swarm repl: cannot save the history to {}: {e}", path.display());
                    }
                }
            }
        }
    }
}

/// Ctrl-C interrupts as usual, remembering whether the line was empty (an empty line twice
/// in a row leaves the REPL; a line with text is just dropped).
struct InterruptHandler {
    empty_line: Arc<AtomicBool>,
}

impl ConditionalEventHandler for InterruptHandler {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, ctx: &EventContext) -> Option<Cmd> {
        self.empty_line.store(ctx.line().is_empty(), Ordering::SeqCst);
        Some(Cmd::Interrupt)
    }
}

/// Completion asks the host; the rest of rustyline's helper hooks keep their defaults.
struct ReplHelper {
    messages: mpsc::UnboundedSender<Message>,
}

impl Completer for ReplHelper {
    type Candidate = String;

    fn complete(&self, line: &str, pos: usize, _: &Context<'_>) -> rustyline::Result<(usize, Vec<String>)> {
        let (reply, answer) = std_mpsc::channel();
        let request = Message::Complete { line: line.to_string(), pos, reply };
        if self.messages.send(request).is_err() {
            return Ok((pos, Vec::new()));
        }
        Ok(answer.recv_timeout(COMPLETION_WAIT).unwrap_or((pos, Vec::new())))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}
impl Highlighter for ReplHelper {}
impl Validator for ReplHelper {}
impl Helper for ReplHelper {}
