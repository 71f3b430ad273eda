//! A copy letter as PDF (A4), with an embedded subset of DejaVu Sans (shipped in
//! `assets/fonts`, compiled in: no system font is read at run time), so any
//! Norwegian or Sámi name prints and `pdftotext` gets the text back.
//!
//! Layout is a pure first pass (lines positioned on pages, wrapped by the font's
//! real advance widths), drawing with krilla a second.

use krilla::Document;
use krilla::geom::Point;
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use krilla::text::{Font, TextDirection};
use skrifa::instance::{LocationRef, Size};
use skrifa::{FontRef, MetadataProvider};

use super::LettersError;
use super::content::LetterContent;

static REGULAR: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSans-subset.ttf");
static BOLD: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSans-Bold-subset.ttf");

/// A4 in points.
const WIDTH: f32 = 595.28;
const HEIGHT: f32 = 841.89;
const LEFT: f32 = 62.0;
const RIGHT: f32 = WIDTH - 62.0;
const TOP: f32 = 60.0;
/// Body text stops here; the footer sits below.
const BOTTOM: f32 = HEIGHT - 70.0;
const BODY: f32 = 10.0;

/// The sender printed at the top; the name of the register's service.
const SENDER: &str = "Gjeldsbro";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Face {
    Regular,
    Bold,
}

/// One positioned line of text.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    x: f32,
    /// Baseline, from the top of the page.
    y: f32,
    size: f32,
    face: Face,
    text: String,
}

/// Measures text with a font's advance widths.
struct Measure<'a> {
    regular: FontRef<'a>,
    bold: FontRef<'a>,
}

impl Measure<'_> {
    fn width(&self, text: &str, size: f32, face: Face) -> f32 {
        let font = match face {
            Face::Regular => &self.regular,
            Face::Bold => &self.bold,
        };
        let charmap = font.charmap();
        let metrics = font.glyph_metrics(Size::new(size), LocationRef::default());
        text.chars()
            .map(|c| {
                let gid = charmap.map(c).unwrap_or_default();
                metrics.advance_width(gid).unwrap_or(size * 0.6)
            })
            .sum()
    }
}

/// Lays lines out top to bottom, breaking pages.
struct Layout<'a> {
    measure: Measure<'a>,
    pages: Vec<Vec<Line>>,
    y: f32,
}

impl Layout<'_> {
    fn page(&mut self) -> &mut Vec<Line> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn space(&mut self, points: f32) {
        self.y += points;
    }

    /// Starts a new page when fewer than `points` remain.
    fn keep(&mut self, points: f32) {
        if self.y + points > BOTTOM {
            self.pages.push(Vec::new());
            self.y = TOP;
        }
    }

    /// Writes `text` from `x`, wrapped at the right margin; continuation lines
    /// are indented by `hang`.
    fn text(&mut self, x: f32, text: &str, size: f32, face: Face, hang: f32) {
        let leading = size * 1.4;
        let mut line = String::new();
        let mut indent = 0.0;
        for word in text.split(' ').filter(|w| !w.is_empty()) {
            let candidate = if line.is_empty() {
                word.to_owned()
            } else {
                format!("{line} {word}")
            };
            if !line.is_empty() && x + indent + self.measure.width(&candidate, size, face) > RIGHT {
                self.emit(x + indent, &line, size, face, leading);
                indent = hang;
                line = word.to_owned();
            } else {
                line = candidate;
            }
        }
        if !line.is_empty() {
            self.emit(x + indent, &line, size, face, leading);
        }
    }

    fn emit(&mut self, x: f32, text: &str, size: f32, face: Face, leading: f32) {
        self.keep(leading);
        self.y += leading;
        let y = self.y;
        self.page().push(Line {
            x,
            y,
            size,
            face,
            text: text.to_owned(),
        });
    }
}

fn lay_out(c: &LetterContent, measure: Measure<'_>) -> Vec<Vec<Line>> {
    let mut l = Layout {
        measure,
        pages: vec![Vec::new()],
        y: TOP,
    };
    l.text(LEFT, SENDER, 14.0, Face::Bold, 0.0);
    l.text(
        LEFT,
        "Gjenpartsbrev om utlevering av gjeldsopplysninger",
        BODY,
        Face::Regular,
        0.0,
    );
    // The recipient block, where a window envelope shows it.
    l.y = 128.0;
    l.text(LEFT, &c.resident.name, 11.0, Face::Regular, 0.0);
    for a in &c.resident.address_lines {
        l.text(LEFT, a, 11.0, Face::Regular, 0.0);
    }
    l.text(
        LEFT,
        &format!("{} {}", c.resident.postcode, c.resident.town),
        11.0,
        Face::Regular,
        0.0,
    );
    l.y = 230.0;
    l.text(
        LEFT,
        &format!("Dato: {}", c.letter_date),
        BODY,
        Face::Regular,
        0.0,
    );
    l.text(
        LEFT,
        &format!("Brevnummer: {}", c.letter_id),
        BODY,
        Face::Regular,
        0.0,
    );
    l.space(14.0);
    l.text(
        LEFT,
        &format!("Gjenpart av gjeldsopplysninger utlevert {}", c.day),
        14.0,
        Face::Bold,
        0.0,
    );
    l.space(4.0);
    l.text(
        LEFT,
        "Vi har utlevert opplysninger om din usikrede gjeld til finansforetakene nedenfor, \
         som har bedt om dem for å vurdere en søknad om kreditt (gjeldsinformasjonsloven § 12). \
         Etter gjeldsinformasjonsforskriften skal du få en gjenpart av det som ble utlevert. \
         Navnet på långiveren ble ikke utlevert til mottakeren; det vises her bare for deg.",
        BODY,
        Face::Regular,
        0.0,
    );
    for (i, e) in c.entries.iter().enumerate() {
        l.space(10.0);
        l.keep(80.0);
        l.text(
            LEFT,
            &format!("{}. Utlevert til {}", i + 1, e.recipient),
            11.0,
            Face::Bold,
            12.0,
        );
        l.text(
            LEFT,
            &format!("Tidspunkt: {}", e.time),
            BODY,
            Face::Regular,
            12.0,
        );
        l.text(
            LEFT,
            &format!("Mottakerens referanse: {}", e.reference_id),
            BODY,
            Face::Regular,
            12.0,
        );
        if let Some(m) = &e.message {
            l.text(
                LEFT,
                &format!("Melding fra mottakeren: {m}"),
                BODY,
                Face::Regular,
                12.0,
            );
        }
        if e.groups.is_empty() {
            l.text(
                LEFT,
                "Utlevert: at du ikke har registrert usikret gjeld.",
                BODY,
                Face::Regular,
                12.0,
            );
        }
        for g in &e.groups {
            l.space(3.0);
            l.keep(40.0);
            l.text(LEFT + 12.0, g.title, BODY, Face::Bold, 0.0);
            for loan in &g.loans {
                l.keep(30.0);
                l.text(
                    LEFT + 24.0,
                    &format!("Långiver: {}", loan.creditor),
                    BODY,
                    Face::Regular,
                    12.0,
                );
                for f in &loan.facts {
                    l.text(LEFT + 36.0, f, BODY, Face::Regular, 12.0);
                }
            }
        }
        if e.missing > 0 {
            l.text(
                LEFT,
                &format!(
                    "{} långiver(e) svarte ikke; fra dem ble ingenting utlevert.",
                    e.missing
                ),
                BODY,
                Face::Regular,
                12.0,
            );
        }
    }
    l.space(12.0);
    l.keep(50.0);
    l.text(
        LEFT,
        "Mener du at opplysningene er feil, kontakt långiveren, som er kilden til dem. \
         Du kan se gjelden din og hvem som har fått opplysninger om den ved å logge inn hos oss.",
        BODY,
        Face::Regular,
        0.0,
    );
    l.pages
}

/// Renders the letter; returns the PDF and its page count.
pub fn render(content: &LetterContent) -> Result<(Vec<u8>, usize), LettersError> {
    let bad_font = || LettersError::Pdf("the embedded font cannot be read".into());
    let measure = Measure {
        regular: FontRef::new(REGULAR).map_err(|_| bad_font())?,
        bold: FontRef::new(BOLD).map_err(|_| bad_font())?,
    };
    let pages = lay_out(content, measure);
    let regular = Font::new(REGULAR.to_vec().into(), 0).ok_or_else(bad_font)?;
    let bold = Font::new(BOLD.to_vec().into(), 0).ok_or_else(bad_font)?;
    let settings = PageSettings::from_wh(WIDTH, HEIGHT)
        .ok_or_else(|| LettersError::Pdf("bad page size".into()))?;

    let mut doc = Document::new();
    doc.set_metadata(
        Metadata::new()
            .title("Gjenpartsbrev om utlevering av gjeldsopplysninger".into())
            .language("nb-NO".into())
            .creator(SENDER.into()),
    );
    let count = pages.len();
    for (n, lines) in pages.iter().enumerate() {
        let mut page = doc.start_page_with(settings.clone());
        let mut surface = page.surface();
        for line in lines {
            let font = match line.face {
                Face::Regular => regular.clone(),
                Face::Bold => bold.clone(),
            };
            surface.draw_text(
                Point::from_xy(line.x, line.y),
                font,
                line.size,
                &line.text,
                false,
                TextDirection::Auto,
            );
        }
        surface.draw_text(
            Point::from_xy(LEFT, HEIGHT - 40.0),
            regular.clone(),
            8.0,
            &format!(
                "{SENDER} · brev {} · side {} av {count}",
                content.letter_id,
                n + 1
            ),
            false,
            TextDirection::Auto,
        );
        surface.finish();
        page.finish();
    }
    let bytes = doc
        .finish()
        .map_err(|e| LettersError::Pdf(format!("{e:?}")))?;
    Ok((bytes, count))
}
