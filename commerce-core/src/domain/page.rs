//! Pagination: `page` from 1, `limit` from 1 to 100.

use serde::{Deserialize, Serialize};

/// A page window asked for by a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    page: u32,
    limit: u32,
}

/// Why a page window was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPage {
    /// `page` below 1.
    #[error("page must be at least 1")]
    Page,
    /// `limit` outside 1..=100.
    #[error("limit must be from 1 to 100")]
    Limit,
}

impl PageRequest {
    /// Largest page size.
    pub const MAX_LIMIT: u32 = 100;
    /// Page size when none is given.
    pub const DEFAULT_LIMIT: u32 = 20;

    /// Validates a window.
    pub fn new(page: u32, limit: u32) -> Result<Self, InvalidPage> {
        if page < 1 {
            return Err(InvalidPage::Page);
        }
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            return Err(InvalidPage::Limit);
        }
        Ok(Self { page, limit })
    }

    /// Page number, from 1.
    pub fn page(&self) -> u32 {
        self.page
    }

    /// Page size.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Items to skip.
    pub fn offset(&self) -> u64 {
        u64::from(self.page - 1) * u64::from(self.limit)
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            page: 1,
            limit: Self::DEFAULT_LIMIT,
        }
    }
}

/// One page of a list and the total count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// How many match in all.
    pub total: u64,
    /// Page number.
    pub page: u32,
    /// Page size.
    pub limit: u32,
}

impl<T> Page<T> {
    /// Wraps items with the window they answer.
    pub fn new(items: Vec<T>, total: u64, request: PageRequest) -> Self {
        Self {
            items,
            total,
            page: request.page,
            limit: request.limit,
        }
    }

    /// Cuts a window out of a full, already ordered list.
    pub fn slice(all: Vec<T>, request: PageRequest) -> Self {
        let total = all.len() as u64;
        let items = all
            .into_iter()
            .skip(usize::try_from(request.offset()).unwrap_or(usize::MAX))
            .take(request.limit as usize)
            .collect();
        Self::new(items, total, request)
    }

    /// Converts the items.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
            page: self.page,
            limit: self.limit,
        }
    }
}
