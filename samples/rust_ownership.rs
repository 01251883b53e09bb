//! Ownership and borrowing in Rust.
//!
//! Every value has exactly one owner; when the owner goes out of scope the value is
//! dropped and its memory freed, with no garbage collector. Assigning a `String` to
//! another variable *moves* it: the old name can no longer be used. To use a value
//! without taking ownership, borrow it: any number of shared references `&T`, or
//! exactly one mutable reference `&mut T`, never both at once. The borrow checker
//! enforces these rules at compile time, which rules out data races and use-after-free.

fn longest<'a>(a: &'a str, b: &'a str) -> &'a str {
    // The lifetime 'a says the result lives as long as both inputs.
    if a.len() >= b.len() {
        a
    } else {
        b
    }
}

fn main() {
    let s1 = String::from("hello");
    let s2 = s1; // move: s1 is no longer valid
    let r = &s2; // shared borrow
    println!("{} {}", r, longest(&s2, "hi"));
}
