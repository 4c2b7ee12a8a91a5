//! Word lists and the light English stemmer shared by the veto and the embedder.
//!
//! The lists are small on purpose: each word in them is a decision about what may differ
//! between two questions that get one answer. A word missing from every list is a content
//! word, and content words must match; so a missing entry costs a hit, never a wrong answer.
//! The synonym groups are the only place where two different words count as one, and each
//! group holds only words that swap in a question without changing its answer.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

/// A small multiplicative hasher for the word tables (short keys, built once, read on
/// every word; the tables' order is never observed, so any hash would do).
#[derive(Default)]
pub(crate) struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by words.
pub(crate) type WordMap<V> = HashMap<&'static str, V, BuildHasherDefault<WordHasher>>;

/// A language told apart by its function words (Latin script only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lang {
    En,
    Fr,
    De,
    Es,
    It,
    Pt,
    Nl,
}

const LANGS: [Lang; 7] = [
    Lang::En,
    Lang::Fr,
    Lang::De,
    Lang::Es,
    Lang::It,
    Lang::Pt,
    Lang::Nl,
];

/// Frequent function words (and a few greetings) of each language: enough to tell the
/// language of a short question, and the stop words of the languages other than English.
fn function_words(lang: Lang) -> &'static [&'static str] {
    match lang {
        Lang::En => &[
            "the", "a", "an", "is", "are", "was", "were", "what", "how", "why", "where", "who",
            "when", "which", "do", "does", "did", "i", "my", "you", "your", "it", "this", "that",
            "of", "and", "to", "in", "for", "with", "on", "can", "should", "would", "will", "be",
            "have", "has", "not", "me", "we", "they", "he", "she", "thank", "thanks", "please",
            "hello", "hi", "good", "much", "many", "time",
        ],
        Lang::Fr => &[
            "le", "la", "les", "un", "une", "des", "du", "est", "sont", "je", "tu", "il", "elle",
            "nous", "vous", "ils", "mon", "ma", "mes", "ton", "ta", "son", "sa", "ce", "cette",
            "comment", "pourquoi", "quoi", "quel", "quelle", "ou", "qui", "que", "qu", "et",
            "avec", "pour", "dans", "sur", "au", "aux", "c", "l", "d", "j", "merci", "bonjour",
            "bonsoir", "oui", "combien", "beaucoup", "tres", "ca", "en", "de", "se", "y",
        ],
        Lang::De => &[
            "der", "die", "das", "ist", "sind", "wie", "warum", "was", "wo", "wer", "wann", "ich",
            "mein", "meine", "du", "sie", "er", "es", "ein", "eine", "und", "mit", "fur", "auf",
            "im", "den", "dem", "zu", "von", "danke", "hallo", "guten", "gute", "nacht", "tag",
            "bitte", "ja", "nein", "geht", "dir", "mir", "kann", "viel", "spat", "uhr", "bin",
        ],
        Lang::Es => &[
            "el", "la", "los", "las", "un", "una", "es", "son", "esta", "estoy", "como", "que",
            "por", "para", "donde", "cual", "cuando", "yo", "mi", "mis", "tu", "usted", "y", "con",
            "en", "del", "al", "de", "puedo", "hola", "gracias", "buenos", "buenas", "dias",
            "noches", "necesito", "muy", "mas", "cuanto", "se", "lo",
        ],
        Lang::It => &[
            "il",
            "lo",
            "gli",
            "la",
            "le",
            "un",
            "una",
            "e",
            "sono",
            "come",
            "perche",
            "cosa",
            "dove",
            "quale",
            "qual",
            "io",
            "mio",
            "mia",
            "con",
            "di",
            "del",
            "della",
            "dell",
            "che",
            "ciao",
            "grazie",
            "buongiorno",
            "buonasera",
            "arrivo",
            "alla",
            "posso",
            "quanto",
            "si",
            "in",
        ],
        Lang::Pt => &[
            "o", "os", "as", "um", "uma", "e", "sao", "como", "por", "que", "onde", "qual", "eu",
            "meu", "minha", "com", "para", "em", "do", "da", "no", "na", "obrigado", "obrigada",
            "ola", "bom", "boa", "dia", "noite", "voce", "posso", "quanto", "se",
        ],
        Lang::Nl => &[
            "de",
            "het",
            "een",
            "is",
            "zijn",
            "hoe",
            "waarom",
            "wat",
            "waar",
            "ik",
            "mijn",
            "jij",
            "je",
            "en",
            "met",
            "voor",
            "op",
            "van",
            "dank",
            "bedankt",
            "hallo",
            "goedemorgen",
            "kan",
        ],
    }
}

/// For each function word, the languages it belongs to (bit `i` for `LANGS[i]`).
fn function_word_langs(w: &str) -> u8 {
    static MAP: OnceLock<WordMap<u8>> = OnceLock::new();
    let map = MAP.get_or_init(|| {
        let mut map = WordMap::default();
        for (i, lang) in LANGS.iter().enumerate() {
            for w in function_words(*lang) {
                *map.entry(*w).or_insert(0) |= 1 << i;
            }
        }
        map
    });
    map.get(w).copied().unwrap_or(0)
}

/// The language of a text from its (lowercased, accent-folded) words: the language whose
/// function words occur most, when it leads every other by at least one; `None` otherwise
/// (too short, or a tie: the language check then says nothing).
pub(crate) fn detect_lang<'a>(words: impl Iterator<Item = &'a str>) -> Option<Lang> {
    let mut score = [0u32; LANGS.len()];
    for w in words {
        let langs = function_word_langs(w);
        for (i, s) in score.iter_mut().enumerate() {
            *s += u32::from(langs >> i & 1);
        }
    }
    let (best, top) = score
        .iter()
        .enumerate()
        .max_by_key(|&(i, s)| (*s, usize::MAX - i))?;
    let second = score
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != best)
        .map(|(_, s)| *s)
        .max()
        .unwrap_or(0);
    (*top >= 1 && *top > second).then_some(LANGS[best])
}

/// Negation words of the languages other than English.
fn foreign_negation(lang: Lang, w: &str) -> Option<Neg> {
    let neg = match (lang, w) {
        (Lang::Fr, "ne" | "n" | "pas" | "aucun" | "aucune" | "rien") => Neg::Not,
        (Lang::Fr, "jamais") => Neg::Never,
        (Lang::Fr, "sans") => Neg::Without,
        (Lang::Fr, "sauf") => Neg::Except,
        (
            Lang::De,
            "nicht" | "kein" | "keine" | "keinen" | "keinem" | "keiner" | "nichts" | "nein",
        ) => Neg::Not,
        (Lang::De, "nie" | "niemals") => Neg::Never,
        (Lang::De, "ohne") => Neg::Without,
        (Lang::De, "ausser" | "auser") => Neg::Except,
        (Lang::Es, "no" | "nada" | "nadie" | "ni") => Neg::Not,
        (Lang::Es, "nunca" | "jamas") => Neg::Never,
        (Lang::Es, "sin") => Neg::Without,
        (Lang::Es, "excepto" | "salvo") => Neg::Except,
        (Lang::It, "non" | "niente" | "nessuno") => Neg::Not,
        (Lang::It, "mai") => Neg::Never,
        (Lang::It, "senza") => Neg::Without,
        (Lang::It, "tranne") => Neg::Except,
        (Lang::Pt, "nao" | "nada" | "ninguem") => Neg::Not,
        (Lang::Pt, "nunca") => Neg::Never,
        (Lang::Pt, "sem") => Neg::Without,
        (Lang::Pt, "exceto") => Neg::Except,
        (Lang::Nl, "niet" | "geen" | "niets") => Neg::Not,
        (Lang::Nl, "nooit") => Neg::Never,
        (Lang::Nl, "zonder") => Neg::Without,
        (Lang::Nl, "behalve") => Neg::Except,
        _ => return None,
    };
    Some(neg)
}

/// A negation and its kind: two questions must hold as many of each kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Neg {
    Not,
    Never,
    Without,
    Except,
}

/// The negation a word makes (English in every text, plus the text's own language).
pub(crate) fn negation(w: &str, lang: Option<Lang>) -> Option<Neg> {
    let neg = match w {
        "not" | "no" | "nope" | "nah" | "none" | "nothing" | "nobody" | "nowhere" | "neither"
        | "nor" | "cannot" => Neg::Not,
        "never" => Neg::Never,
        "without" => Neg::Without,
        "except" | "excluding" | "excepting" => Neg::Except,
        _ => {
            return lang
                .filter(|l| *l != Lang::En)
                .and_then(|l| foreign_negation(l, w));
        }
    };
    Some(neg)
}

/// The question word a word asks, `which` folded into `what`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Wh {
    What,
    Why,
    When,
    Where,
    Who,
    Whose,
    How,
}

pub(crate) fn wh(w: &str) -> Option<Wh> {
    Some(match w {
        "what" | "which" => Wh::What,
        "why" => Wh::Why,
        "when" => Wh::When,
        "where" => Wh::Where,
        "who" | "whom" => Wh::Who,
        "whose" => Wh::Whose,
        "how" => Wh::How,
        _ => return None,
    })
}

/// The modality of a question: may I, should I, must I.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Modal {
    Can,
    Should,
    Must,
}

pub(crate) fn modal(w: &str) -> Option<Modal> {
    Some(match w {
        "can" | "could" | "may" | "might" => Modal::Can,
        "should" | "ought" | "shall" => Modal::Should,
        "must" | "gotta" => Modal::Must,
        _ => return None,
    })
}

/// The time an auxiliary verb puts a question in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Tense {
    Past,
    Future,
}

pub(crate) fn tense(w: &str) -> Option<Tense> {
    Some(match w {
        "was" | "were" | "did" | "had" | "been" => Tense::Past,
        "will" | "gonna" => Tense::Future,
        _ => return None,
    })
}

/// The person a question is about: "what is my name" is not "what is your name". (The
/// generic "you" of "how do you boil an egg" is read with its frame and does not count.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Person {
    First,
    Second,
    He,
    She,
    They,
}

pub(crate) fn person(w: &str) -> Option<Person> {
    Some(match w {
        "i" | "me" | "my" | "mine" | "myself" | "we" | "us" | "our" | "ours" | "ourselves" => {
            Person::First
        }
        "you" | "your" | "yours" | "yourself" | "yourselves" | "u" | "ur" | "ya" => Person::Second,
        "he" | "him" | "his" | "himself" => Person::He,
        "she" | "her" | "hers" | "herself" => Person::She,
        "they" | "them" | "their" | "theirs" | "themselves" => Person::They,
        _ => return None,
    })
}

/// A word that relates what follows it to the rest ("from Paris to London", "faster than
/// Java", "a poem for my wife", "ibuprofen and paracetamol").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Rel {
    To,
    From,
    Than,
    Versus,
    Per,
    Of,
    In,
    Before,
    After,
    For,
    About,
    With,
    On,
    At,
    By,
    And,
    Or,
}

impl Rel {
    /// Whether the order of what it joins does not matter ("tabs or spaces" is "spaces or
    /// tabs").
    pub(crate) fn symmetric(self) -> bool {
        matches!(self, Rel::And | Rel::Or)
    }
}

pub(crate) fn relation(w: &str) -> Option<Rel> {
    Some(match w {
        "to" | "into" | "onto" => Rel::To,
        "from" => Rel::From,
        "than" => Rel::Than,
        "vs" | "versus" => Rel::Versus,
        "per" => Rel::Per,
        "of" => Rel::Of,
        "in" | "inside" | "within" => Rel::In,
        "before" => Rel::Before,
        "after" => Rel::After,
        "for" => Rel::For,
        "about" | "regarding" => Rel::About,
        "with" => Rel::With,
        "on" | "upon" => Rel::On,
        "at" => Rel::At,
        "by" => Rel::By,
        "and" | "&" => Rel::And,
        "or" => Rel::Or,
        _ => return None,
    })
}

/// English words that carry no content of their own: articles, `it`, demonstratives,
/// `be`/`do`/`have` in the present, `if`, `but`. Prepositions and conjunctions are order
/// words ([`Rel`]), pronouns are persons, particles (`up`, `off`, `out`, `over`...) are
/// content words.
pub(crate) fn english_stopword(w: &str) -> bool {
    matches!(
        w,
        "a" | "an"
            | "the"
            | "it"
            | "its"
            | "itself"
            | "this"
            | "that"
            | "these"
            | "those"
            | "there"
            | "here"
            | "is"
            | "am"
            | "are"
            | "be"
            | "being"
            | "do"
            | "does"
            | "doing"
            | "have"
            | "has"
            | "having"
            | "would"
            | "as"
            | "but"
            | "if"
            | "whether"
            | "then"
            | "some"
            | "any"
            | "such"
            | "own"
            | "one"
            | "ones"
            | "s"
            | "t"
            | "d"
    )
}

/// Stop words of a text in `lang`: the English ones, plus that language's function words.
pub(crate) fn stopword(w: &str, lang: Option<Lang>) -> bool {
    english_stopword(w)
        || lang.filter(|l| *l != Lang::En).is_some_and(|l| {
            let bit = LANGS.iter().position(|x| *x == l).unwrap_or(0);
            function_word_langs(w) >> bit & 1 == 1
        })
}

/// Words that never change a question: politeness and hedges. Free everywhere.
pub(crate) fn polite(w: &str) -> bool {
    matches!(
        w,
        "please"
            | "pls"
            | "plz"
            | "kindly"
            | "just"
            | "actually"
            | "really"
            | "basically"
            | "simply"
            | "exactly"
            | "also"
            | "so"
            | "um"
            | "uh"
            | "hmm"
            | "anyway"
            | "btw"
            | "maybe"
            | "perhaps"
            | "oh"
            | "guys"
    )
}

/// Words of asking and greeting. Free beside content words ("Hi! How do I delete my
/// account?"; greetings only where they open a sentence); when a question is nothing but
/// such words ("Thanks!", "Tell me") they are its content, under the key returned here.
pub(crate) fn soft(w: &str) -> Option<&'static str> {
    Some(match w {
        "hi" | "hello" | "hey" | "greetings" | "howdy" => "#greet",
        "thanks" | "thank" | "thx" | "ty" | "cheers" => "#thanks",
        "yes" | "yeah" | "yep" | "yup" | "sure" | "ok" | "okay" | "alright" | "aye" => "#yes",
        "bye" | "goodbye" => "#bye",
        "tell" | "told" | "telling" => "#tell",
        "know" | "knowing" => "#know",
        "help" | "helping" | "assist" => "#help",
        "want" | "wanting" => "#want",
        "wonder" | "wondering" | "curious" => "#wonder",
        "understand" => "#understand",
        _ => return None,
    })
}

/// Whether a key of [`soft`] is a greeting, thanks, yes or goodbye (free only where it
/// opens a sentence).
pub(crate) fn social(key: &str) -> bool {
    matches!(key, "#greet" | "#thanks" | "#yes" | "#bye")
}

/// Words of time: a question asked about another day is another question.
pub(crate) fn time_word(w: &str) -> Option<&'static str> {
    Some(match w {
        "january" | "jan" => "january",
        "february" | "feb" => "february",
        "march" => "march",
        "april" | "apr" => "april",
        "june" => "june",
        "july" => "july",
        "august" | "aug" => "august",
        "september" | "sept" => "september",
        "october" | "oct" => "october",
        "november" | "nov" => "november",
        "december" | "dec" => "december",
        "monday" | "mondays" => "monday",
        "tuesday" | "tuesdays" => "tuesday",
        "wednesday" | "wednesdays" => "wednesday",
        "thursday" | "thursdays" => "thursday",
        "friday" | "fridays" => "friday",
        "saturday" | "saturdays" => "saturday",
        "sunday" | "sundays" => "sunday",
        "today" => "today",
        "tonight" => "tonight",
        "tomorrow" => "tomorrow",
        "yesterday" => "yesterday",
        "now" => "now",
        "morning" | "mornings" => "morning",
        "afternoon" | "afternoons" => "afternoon",
        "evening" | "evenings" => "evening",
        "night" | "nights" => "night",
        "weekend" | "weekends" => "weekend",
        "noon" => "noon",
        "midnight" => "midnight",
        "spring" => "spring",
        "summer" => "summer",
        "autumn" => "autumn",
        "winter" => "winter",
        _ => return None,
    })
}

/// The unit a word names, canonical. One-letter and ambiguous forms (`m`, `s`, `c`, `in`)
/// only count right after a number; `only_after_number` says which.
pub(crate) fn unit(w: &str) -> Option<(&'static str, bool)> {
    let after_number_only = |u| Some((u, true));
    let anywhere = |u| Some((u, false));
    match w {
        "km" | "kms" | "kilometer" | "kilometers" | "kilometre" | "kilometres" => anywhere("km"),
        "mi" | "mile" | "miles" => anywhere("mi"),
        "m" => after_number_only("m"),
        "meter" | "meters" | "metre" | "metres" => anywhere("m"),
        "cm" | "centimeter" | "centimeters" | "centimetre" | "centimetres" => anywhere("cm"),
        "mm" | "millimeter" | "millimeters" | "millimetre" | "millimetres" => anywhere("mm"),
        "ft" | "foot" | "feet" => anywhere("ft"),
        "inch" | "inches" => anywhere("in"),
        "yd" | "yard" | "yards" => anywhere("yd"),
        "kg" | "kgs" | "kilo" | "kilos" | "kilogram" | "kilograms" | "kilogramme"
        | "kilogrammes" => anywhere("kg"),
        "g" => after_number_only("g"),
        "gram" | "grams" | "gramme" | "grammes" => anywhere("g"),
        "mg" | "milligram" | "milligrams" => anywhere("mg"),
        "lb" | "lbs" | "pound" | "pounds" => anywhere("lb"),
        "oz" | "ounce" | "ounces" => anywhere("oz"),
        "l" => after_number_only("l"),
        "liter" | "liters" | "litre" | "litres" => anywhere("l"),
        "ml" | "milliliter" | "milliliters" | "millilitre" | "millilitres" => anywhere("ml"),
        "gallon" | "gallons" | "gal" => anywhere("gal"),
        "cup" | "cups" => anywhere("cup"),
        "tbsp" | "tablespoon" | "tablespoons" => anywhere("tbsp"),
        "tsp" | "teaspoon" | "teaspoons" => anywhere("tsp"),
        "celsius" | "°c" | "centigrade" => anywhere("°C"),
        "c" => after_number_only("°C"),
        "fahrenheit" | "°f" => anywhere("°F"),
        "f" => after_number_only("°F"),
        "kelvin" => anywhere("K"),
        "degree" | "degrees" | "deg" | "°" => anywhere("deg"),
        "%" | "percent" | "pct" => anywhere("%"),
        "$" | "dollar" | "dollars" | "usd" | "bucks" => anywhere("$"),
        "€" | "euro" | "euros" | "eur" => anywhere("€"),
        "£" | "gbp" | "quid" => anywhere("£"),
        "¥" | "yen" | "jpy" => anywhere("¥"),
        "s" => after_number_only("s"),
        "sec" | "secs" | "second" | "seconds" => after_number_only("s"),
        "min" | "mins" | "minute" | "minutes" => anywhere("min"),
        "h" => after_number_only("h"),
        "hr" | "hrs" | "hour" | "hours" => anywhere("h"),
        "day" | "days" => anywhere("day"),
        "week" | "weeks" | "wk" | "wks" => anywhere("week"),
        "month" | "months" => anywhere("month"),
        "year" | "years" | "yr" | "yrs" => anywhere("year"),
        "decade" | "decades" => anywhere("decade"),
        "b" | "byte" | "bytes" => anywhere("B"),
        "kb" | "kilobyte" | "kilobytes" => anywhere("KB"),
        "mb" | "megabyte" | "megabytes" => anywhere("MB"),
        "gb" | "gigabyte" | "gigabytes" => anywhere("GB"),
        "tb" | "terabyte" | "terabytes" => anywhere("TB"),
        "kbps" => anywhere("kbps"),
        "mbps" => anywhere("Mbps"),
        "gbps" => anywhere("Gbps"),
        "hz" | "hertz" => anywhere("Hz"),
        "khz" => anywhere("kHz"),
        "mhz" => anywhere("MHz"),
        "ghz" => anywhere("GHz"),
        "w" => after_number_only("W"),
        "watt" | "watts" => anywhere("W"),
        "kw" | "kilowatt" | "kilowatts" => anywhere("kW"),
        "kwh" => anywhere("kWh"),
        "v" => after_number_only("V"),
        "volt" | "volts" => anywhere("V"),
        "mah" => anywhere("mAh"),
        "mph" => anywhere("mph"),
        "kph" | "kmh" => anywhere("km/h"),
        "px" | "pixel" | "pixels" => anywhere("px"),
        "k" => after_number_only("k"),
        "x" | "times" => after_number_only("x"),
        "am" | "a.m." => after_number_only("am"),
        "pm" | "p.m." => after_number_only("pm"),
        "kcal" | "calorie" | "calories" | "cal" => anywhere("kcal"),
        "word" | "words" => after_number_only("word"),
        "page" | "pages" => after_number_only("page"),
        "st" | "nd" | "rd" | "th" => after_number_only("ord"),
        _ => None,
    }
}

/// The value of a number word (`ordinal` true for "first", "second"...).
pub(crate) fn number_word(w: &str) -> Option<(f64, NumberWord)> {
    use NumberWord::{Ordinal, Scale, Unit};
    let n = match w {
        "zero" => (0.0, Unit),
        "one" => (1.0, Unit),
        "two" => (2.0, Unit),
        "three" => (3.0, Unit),
        "four" => (4.0, Unit),
        "five" => (5.0, Unit),
        "six" => (6.0, Unit),
        "seven" => (7.0, Unit),
        "eight" => (8.0, Unit),
        "nine" => (9.0, Unit),
        "ten" => (10.0, Unit),
        "eleven" => (11.0, Unit),
        "twelve" => (12.0, Unit),
        "thirteen" => (13.0, Unit),
        "fourteen" => (14.0, Unit),
        "fifteen" => (15.0, Unit),
        "sixteen" => (16.0, Unit),
        "seventeen" => (17.0, Unit),
        "eighteen" => (18.0, Unit),
        "nineteen" => (19.0, Unit),
        "twenty" => (20.0, Unit),
        "thirty" => (30.0, Unit),
        "forty" => (40.0, Unit),
        "fifty" => (50.0, Unit),
        "sixty" => (60.0, Unit),
        "seventy" => (70.0, Unit),
        "eighty" => (80.0, Unit),
        "ninety" => (90.0, Unit),
        "dozen" => (12.0, Unit),
        "hundred" => (100.0, Scale),
        "thousand" => (1e3, Scale),
        "million" => (1e6, Scale),
        "billion" => (1e9, Scale),
        "trillion" => (1e12, Scale),
        "first" => (1.0, Ordinal),
        "second" => (2.0, Ordinal),
        "third" => (3.0, Ordinal),
        "fourth" => (4.0, Ordinal),
        "fifth" => (5.0, Ordinal),
        "sixth" => (6.0, Ordinal),
        "seventh" => (7.0, Ordinal),
        "eighth" => (8.0, Ordinal),
        "ninth" => (9.0, Ordinal),
        "tenth" => (10.0, Ordinal),
        "eleventh" => (11.0, Ordinal),
        "twelfth" => (12.0, Ordinal),
        "twentieth" => (20.0, Ordinal),
        "thirtieth" => (30.0, Ordinal),
        "hundredth" => (100.0, Ordinal),
        _ => return None,
    };
    Some(n)
}

/// How a number word combines with its neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NumberWord {
    /// Adds to the number being read ("twenty" "five").
    Unit,
    /// Multiplies it ("hundred", "million").
    Scale,
    /// Ends it, as an ordinal ("fifth").
    Ordinal,
}

/// English contractions and their expansions (the apostrophe already folded to `'`), and
/// the common spellings without an apostrophe.
pub(crate) fn contraction(w: &str) -> Option<&'static [&'static str]> {
    Some(match w {
        "can't" | "cant" | "cannot" => &["can", "not"],
        "won't" => &["will", "not"],
        "shan't" => &["shall", "not"],
        "ain't" => &["is", "not"],
        "don't" | "dont" => &["do", "not"],
        "doesn't" | "doesnt" => &["does", "not"],
        "didn't" | "didnt" => &["did", "not"],
        "isn't" | "isnt" => &["is", "not"],
        "aren't" | "arent" => &["are", "not"],
        "wasn't" | "wasnt" => &["was", "not"],
        "weren't" | "werent" => &["were", "not"],
        "haven't" | "havent" => &["have", "not"],
        "hasn't" | "hasnt" => &["has", "not"],
        "hadn't" | "hadnt" => &["had", "not"],
        "shouldn't" | "shouldnt" => &["should", "not"],
        "wouldn't" | "wouldnt" => &["would", "not"],
        "couldn't" | "couldnt" => &["could", "not"],
        "mustn't" | "mustnt" => &["must", "not"],
        "needn't" => &["need", "not"],
        "im" => &["i", "am"],
        "ive" => &["i", "have"],
        "whats" => &["what", "is"],
        "hows" => &["how", "is"],
        "wheres" => &["where", "is"],
        "whos" => &["who", "is"],
        "thats" => &["that", "is"],
        "theres" => &["there", "is"],
        "youre" => &["you", "are"],
        "theyre" => &["they", "are"],
        "let's" | "lets" => &["let", "us"],
        "gonna" => &["going", "to"],
        "wanna" => &["want", "to"],
        "gotta" => &["got", "to"],
        "r" => &["are"],
        _ => return None,
    })
}

/// The expansion of a clitic after an apostrophe (`'re` → `are`); `'s` is dropped (it is
/// `is`, `has` or a possessive, none of which is content).
pub(crate) fn clitic(suffix: &str) -> Option<&'static str> {
    Some(match suffix {
        "re" => "are",
        "ve" => "have",
        "ll" => "will",
        "d" => "would",
        "m" => "am",
        "s" | "" => "",
        _ => return None,
    })
}

/// Base forms of irregular plurals, `-ing` forms and past participles (`made`, `written`:
/// "how is cheese made" asks "how do you make cheese"). Simple pasts (`wrote`, `went`) are
/// not here: a verb in the past is another question ("how many people lived in London").
fn irregular(w: &str) -> Option<&'static str> {
    Some(match w {
        "made" => "make",
        "going" | "gone" => "go",
        "running" => "run",
        "taken" => "take",
        "given" => "give",
        "gotten" => "get",
        "eaten" => "eat",
        "written" => "write",
        "broken" => "break",
        "known" => "know",
        "seeing" | "seen" => "see",
        "built" => "build",
        "flown" => "fly",
        "driven" => "drive",
        "chosen" => "choose",
        "begun" => "begin",
        "forgotten" => "forget",
        "frozen" => "freeze",
        "worn" => "wear",
        "hidden" => "hide",
        "spoken" => "speak",
        "fallen" => "fall",
        "grown" => "grow",
        "shown" => "show",
        "thrown" => "throw",
        "stolen" => "steal",
        "using" | "used" => "use",
        "dying" => "die",
        "lying" => "lie",
        "children" => "child",
        "people" => "person",
        "men" => "man",
        "women" => "woman",
        "teeth" => "tooth",
        "mice" => "mouse",
        "geese" => "goose",
        "knives" => "knife",
        "wives" => "wife",
        "halves" => "half",
        "shelves" => "shelf",
        "wolves" => "wolf",
        "leaves" => "leaf",
        _ => return None,
    })
}

/// Words the stemmer must leave alone (an `s` that is not a plural).
fn keeps_final_s(w: &str) -> bool {
    matches!(
        w,
        "news"
            | "series"
            | "species"
            | "physics"
            | "mathematics"
            | "economics"
            | "politics"
            | "ethics"
            | "lens"
            | "gas"
            | "chaos"
            | "always"
            | "perhaps"
            | "thus"
            | "yes"
            | "was"
            | "has"
            | "does"
            | "is"
            | "its"
            | "this"
            | "ios"
            | "macos"
            | "windows"
            | "kubernetes"
            | "postgres"
            | "analysis"
            | "canvas"
            | "atlas"
    )
}

fn is_vowel(c: u8) -> bool {
    matches!(c, b'a' | b'e' | b'i' | b'o' | b'u' | b'y')
}

/// A light English stemmer: plurals, `-ing`, a final `e`, `y` → `i`, and a doubled final
/// consonant. Conservative by design: it merges inflections of one word and tries not to
/// merge different words (it leaves `-ed` alone, a tense, and `-er`, `-est`, `-ly`,
/// `-ness`, since "faster" is not "fast").
pub(crate) fn stem(w: &str) -> String {
    if let Some(base) = irregular(w) {
        return stem_regular(base);
    }
    stem_regular(w)
}

fn stem_regular(w: &str) -> String {
    if !w.is_ascii() || w.len() < 3 || w.bytes().any(|b| !b.is_ascii_alphabetic()) {
        return w.to_owned();
    }
    let mut s: Vec<u8> = w.as_bytes().to_vec();
    // Plurals.
    if !keeps_final_s(w) {
        if s.ends_with(b"sses") {
            s.truncate(s.len() - 2);
        } else if s.len() > 4 && s.ends_with(b"ies") {
            s.truncate(s.len() - 3);
            s.push(b'i');
        } else if s.len() > 3
            && s.ends_with(b"es")
            && (s[..s.len() - 2].ends_with(b"x")
                || s[..s.len() - 2].ends_with(b"z")
                || s[..s.len() - 2].ends_with(b"ch")
                || s[..s.len() - 2].ends_with(b"sh")
                || s[..s.len() - 2].ends_with(b"ss"))
        {
            s.truncate(s.len() - 2);
        } else if s.len() > 3
            && s.ends_with(b"s")
            && !s.ends_with(b"ss")
            && !s.ends_with(b"us")
            && !s.ends_with(b"is")
        {
            s.pop();
        }
    }
    // -ing, when a vowel is left before it. (-ed stays: "lived" is not "live".)
    let mut stripped = false;
    if s.ends_with(b"ing") {
        let rest = &s[..s.len() - 3];
        if rest.len() >= 3 && rest.iter().any(|&c| is_vowel(c)) {
            s.truncate(s.len() - 3);
            stripped = true;
        }
    }
    // "running" → "run", but "installing" keeps "install" here (l, s, z stay doubled).
    let n = s.len();
    if stripped
        && n >= 2
        && s[n - 1] == s[n - 2]
        && !is_vowel(s[n - 1])
        && !matches!(s[n - 1], b'l' | b's' | b'z')
    {
        s.pop();
    }
    // Final forms shared by every inflection: "install"/"instal", "make"/"mak", "fly"/"fli".
    let n = s.len();
    if n >= 5 && s[n - 1] == s[n - 2] && !is_vowel(s[n - 1]) {
        s.pop();
    }
    if s.len() > 3 && s.ends_with(b"e") {
        s.pop();
    }
    if s.len() > 2 && s.ends_with(b"y") {
        let n = s.len();
        s[n - 1] = b'i';
    }
    // British -ise, -yse: one key with -ize, -yze.
    let n = s.len();
    if n >= 6 && (s.ends_with(b"is") || s.ends_with(b"ys")) {
        s[n - 1] = b'z';
    }
    String::from_utf8(s).unwrap_or_else(|_| w.to_owned())
}

/// Groups of words one question may swap for another without changing its answer. The
/// first word names the group. Kept to true synonyms in questions: no group holds words
/// with different answers ("update"/"upgrade", "reset"/"restart", "need"/"want" are not
/// here).
const SYNONYMS: &[&[&str]] = &[
    &["fix", "repair", "resolve"],
    &["buy", "purchase"],
    &["start", "begin", "commence"],
    &["big", "large"],
    &["small", "little"],
    &["car", "automobile"],
    &["movie", "film"],
    &["fast", "quick", "rapid", "quickly", "rapidly", "speedy"],
    &["delete", "remove", "erase"],
    &["change", "modify", "alter"],
    &["get", "obtain"],
    &["show", "display"],
    &["use", "utilize", "utilise"],
    &["photo", "picture", "image", "pic"],
    &["phone", "smartphone", "cellphone", "mobile"],
    &["computer", "pc"],
    &["wrong", "incorrect"],
    &["hard", "difficult"],
    &["easy", "simple"],
    &["kid", "child"],
    &["doctor", "physician"],
    &["rich", "wealthy"],
    &["talk", "speak"],
    &["choose", "pick", "select"],
    &["exit", "quit"],
    &["folder", "directory"],
    &["app", "application"],
    &["website", "site"],
    &["recommend", "suggest"],
    &["meaning", "definition", "mean", "define"],
    &["cost", "price"],
    &["cheap", "inexpensive"],
    &["expensive", "costly", "pricey"],
    &["improve", "enhance"],
    &["decrease", "reduce", "lower"],
    &["issue", "problem"],
    &["sick", "ill"],
    &["smart", "intelligent", "clever"],
    &["happy", "glad"],
    &["verify", "confirm"],
    &["create", "make"],
    &["find", "locate"],
    &["allow", "permit"],
    &["reply", "respond"],
    &["clothes", "clothing"],
    &["tv", "television"],
    &["mom", "mother", "mum"],
    &["dad", "father"],
    &["beginner", "novice", "newbie"],
    &["near", "nearby"],
    &["turn", "switch"],
    &["login", "signin", "logon"],
    &["logout", "signout", "logoff"],
    &["color", "colour"],
    &["favorite", "favourite"],
    &["behavior", "behaviour"],
    &["flavor", "flavour"],
    &["neighbor", "neighbour"],
    &["honor", "honour"],
    &["humor", "humour"],
    &["labor", "labour"],
    &["center", "centre"],
    &["theater", "theatre"],
    &["meter", "metre"],
    &["liter", "litre"],
    &["fiber", "fibre"],
    &["gray", "grey"],
    &["program", "programme"],
    &["catalog", "catalogue"],
    &["dialog", "dialogue"],
    &["tire", "tyre"],
    &["aluminum", "aluminium"],
    &["mustache", "moustache"],
    &["pajamas", "pyjamas"],
];

/// The key of a content word: its stem, or the name of its synonym group.
pub(crate) fn content_key(w: &str) -> Cow<'static, str> {
    let stemmed = stem(w);
    match synonyms().get(stemmed.as_str()) {
        Some(group) => Cow::Borrowed(*group),
        None => Cow::Owned(stemmed),
    }
}

fn synonyms() -> &'static HashMap<String, &'static str, BuildHasherDefault<WordHasher>> {
    static MAP: OnceLock<HashMap<String, &'static str, BuildHasherDefault<WordHasher>>> =
        OnceLock::new();
    MAP.get_or_init(|| {
        let mut map = HashMap::default();
        for group in SYNONYMS {
            let name = group[0];
            for word in *group {
                map.insert(stem(word), name);
            }
        }
        map
    })
}

/// Pairs of real words one edit apart that the typo allowance must not merge.
pub(crate) fn confusable(a: &str, b: &str) -> bool {
    const PAIRS: &[(&str, &str)] = &[
        ("casual", "causal"),
        ("united", "untied"),
        ("sacred", "scared"),
        ("silver", "sliver"),
        ("marital", "martial"),
        ("complaint", "compliant"),
        ("calvary", "cavalry"),
        ("desert", "dessert"),
        ("deserts", "desserts"),
        ("later", "latter"),
        ("super", "supper"),
        ("diner", "dinner"),
        ("diners", "dinners"),
        ("chose", "choose"),
        ("canon", "cannon"),
        ("biter", "bitter"),
        ("filing", "filling"),
        ("planed", "planned"),
        ("taping", "tapping"),
        ("hoping", "hopping"),
        ("dining", "dinning"),
        ("tiling", "tilling"),
        ("wining", "winning"),
        ("coping", "copping"),
        ("pined", "pinned"),
        ("stripe", "strippe"),
        ("latest", "lattest"),
        ("petal", "pettal"),
        ("cloths", "clothes"),
        ("angel", "angle"),
        ("angels", "angles"),
        ("trial", "trail"),
        ("trials", "trails"),
        ("quite", "quiet"),
        ("diary", "dairy"),
        ("tired", "tried"),
        ("filed", "field"),
        ("fried", "fired"),
        ("three", "there"),
        ("parties", "pirates"),
        ("breath", "breathe"),
        ("loose", "lose"),
    ];
    PAIRS
        .iter()
        .any(|&(x, y)| (x == a && y == b) || (x == b && y == a))
}

/// Whether `a` and `b` are one slip of the keyboard apart: two adjacent letters swapped
/// (not the first, words of six letters or more), or one letter doubled or undoubled
/// (words of five letters or more); and not a known pair of real words.
pub(crate) fn is_typo(a: &str, b: &str) -> bool {
    if a == b
        || !a.bytes().all(|c| c.is_ascii_lowercase())
        || !b.bytes().all(|c| c.is_ascii_lowercase())
        || confusable(a, b)
    {
        return false;
    }
    let (x, y) = (a.as_bytes(), b.as_bytes());
    if x.len() == y.len() {
        if x.len() < 6 {
            return false;
        }
        let diff: Vec<usize> = (0..x.len()).filter(|&i| x[i] != y[i]).collect();
        return diff.len() == 2
            && diff[0] >= 1
            && diff[1] == diff[0] + 1
            && x[diff[0]] == y[diff[1]]
            && x[diff[1]] == y[diff[0]];
    }
    let (short, long) = if x.len() < y.len() { (x, y) } else { (y, x) };
    if long.len() != short.len() + 1 || short.len() < 5 {
        return false;
    }
    let i = (0..short.len())
        .find(|&i| short[i] != long[i])
        .unwrap_or(short.len());
    // `long` has one extra letter at `i`: it must double a neighbour.
    short[i..] == long[i + 1..]
        && ((i > 0 && long[i] == long[i - 1]) || (i + 1 < long.len() && long[i] == long[i + 1]))
}

/// Folds a lowercase Latin letter with a diacritic to its base letter(s).
pub(crate) fn fold(c: char, out: &mut String) {
    let base = match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'ç' | 'ć' | 'č' => "c",
        'ď' | 'đ' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'ğ' => "g",
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => "i",
        'ł' => "l",
        'ñ' | 'ń' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
        'ř' => "r",
        'ś' | 'š' | 'ş' => "s",
        'ß' => "ss",
        'ť' | 'ţ' => "t",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' => "u",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        'æ' => "ae",
        'œ' => "oe",
        _ => {
            out.push(c);
            return;
        }
    };
    out.push_str(base);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_merge_inflections() {
        for (a, b) in [
            ("passwords", "password"),
            ("installing", "install"),
            ("installs", "install"),
            ("making", "make"),
            ("running", "run"),
            ("cookies", "cookie"),
            ("studies", "study"),
            ("studying", "study"),
            ("boxes", "box"),
            ("tomatoes", "tomato"),
            ("travelling", "traveling"),
            ("made", "making"),
            ("optimise", "optimize"),
            ("analysing", "analyzing"),
            ("using", "use"),
            ("children", "child"),
        ] {
            assert_eq!(stem(a), stem(b), "{a} / {b}");
        }
    }

    #[test]
    fn stems_keep_words_apart() {
        for (a, b) in [
            ("news", "new"),
            ("faster", "fast"),
            ("string", "str"),
            ("thing", "th"),
            ("password", "username"),
            ("lived", "live"),
        ] {
            assert_ne!(stem(a), stem(b), "{a} / {b}");
        }
    }

    #[test]
    fn synonyms_share_a_key() {
        assert_eq!(content_key("repairing"), content_key("fix"));
        assert_eq!(content_key("directories"), content_key("folder"));
        assert_eq!(content_key("colour"), content_key("color"));
        assert_ne!(content_key("password"), content_key("passcode"));
    }

    #[test]
    fn typos_are_narrow() {
        assert!(is_typo("passwrod", "password"));
        assert!(is_typo("recieve", "receive"));
        assert!(is_typo("adress", "address"));
        assert!(is_typo("acess", "access"));
        assert!(!is_typo("passward", "password"), "substitution");
        assert!(!is_typo("house", "horse"));
        assert!(!is_typo("casual", "causal"));
        assert!(!is_typo("desert", "dessert"));
        assert!(!is_typo("trail", "trial"));
        assert!(!is_typo("form", "from"));
    }

    #[test]
    fn languages_by_function_words() {
        let lang = |s: &str| detect_lang(s.split(' '));
        assert_eq!(lang("how do i reset my password"), Some(Lang::En));
        assert_eq!(
            lang("comment reinitialiser mon mot de passe"),
            Some(Lang::Fr)
        );
        assert_eq!(lang("wo ist der bahnhof"), Some(Lang::De));
        assert_eq!(lang("necesito un medico"), Some(Lang::Es));
        assert_eq!(lang("continue"), None);
    }
}
