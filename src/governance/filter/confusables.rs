//! Letters of other scripts that look like Latin ones (`You ѕhould` with a Cyrillic `ѕ`), folded to
//! the Latin letter before matching: the single-letter Latin prototypes of Unicode TR39's
//! confusables data for the Cyrillic, Greek and Armenian letters (and a few Latin variants) that
//! pass for Latin letters in running text. Fullwidth forms and the mathematical alphanumerics are
//! already folded by NFKC. A compact table rather than the whole TR39 skeleton: matching needs
//! only letters that can stand in for the Latin letters of a phrase, one char for one char (so
//! every folded char still maps back to its original).

/// The Latin letter `c` passes for, if it is one of the table's.
pub fn latin_lookalike(c: char) -> Option<char> {
    let latin = match c {
        // Cyrillic, upper case.
        'А' => 'A',
        'В' => 'B',
        'С' => 'C',
        'Е' => 'E',
        'Н' => 'H',
        'І' => 'I',
        'Ј' => 'J',
        'К' => 'K',
        'М' => 'M',
        'О' => 'O',
        'Р' => 'P',
        'Ѕ' => 'S',
        'Т' => 'T',
        'Х' => 'X',
        'Ү' => 'Y',
        'Ԛ' => 'Q',
        'Ԝ' => 'W',
        // Cyrillic, lower case.
        'а' => 'a',
        'с' => 'c',
        'ԁ' => 'd',
        'е' => 'e',
        'һ' => 'h',
        'і' => 'i',
        'ј' => 'j',
        'ӏ' => 'l',
        'о' => 'o',
        'р' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'ѵ' => 'v',
        'ԝ' => 'w',
        'х' => 'x',
        'у' | 'ү' => 'y',
        // Greek.
        'Α' => 'A',
        'Β' => 'B',
        'Ε' => 'E',
        'Ζ' => 'Z',
        'Η' => 'H',
        'Ι' => 'I',
        'Κ' => 'K',
        'Μ' => 'M',
        'Ν' => 'N',
        'Ο' => 'O',
        'Ρ' => 'P',
        'Τ' => 'T',
        'Υ' => 'Y',
        'Χ' => 'X',
        'α' => 'a',
        'ϲ' => 'c',
        'ι' => 'i',
        'ϳ' => 'j',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'τ' => 't',
        'υ' => 'u',
        'χ' => 'x',
        'γ' => 'y',
        // Armenian.
        'օ' => 'o',
        'ս' => 'u',
        'ո' => 'n',
        'հ' => 'h',
        'ց' => 'g',
        'զ' => 'q',
        // Latin variants.
        'ı' | 'ɩ' => 'i',
        'ɡ' => 'g',
        'ʏ' => 'y',
        _ => return None,
    };
    Some(latin)
}
